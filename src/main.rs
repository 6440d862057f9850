//! The `regauth` command line: serve, check, explain, hash-password, keys,
//! tokens, state, and a terminal's login and logout.
//! Only argument handling and process concerns (logging, signals) live here.

#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use regauth::admin::registry_config::RegistryFormat;
use regauth::admin::rotation::{self, Retire};
use regauth::clock;
use regauth::config::Config;
use regauth::domain::policy::Principal;
use regauth::keys;
use regauth_providers::Identity;

/// mimalloc: the hot path allocates many small short-lived buffers, and the
/// system allocator was about a tenth of a token request's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "regauth",
    version,
    about = "Token server for container registries"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true, env = "REGAUTH_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Run the token server.
    Serve {
        /// Configuration file (default: config/regauth.toml, else the embedded default).
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and policy; exits non-zero naming the offending key.
    Check {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show which rules match a user and scope, and the resulting grant.
    Explain {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// The user to explain for (omit with --anonymous).
        #[arg(long, required_unless_present = "anonymous")]
        user: Option<String>,
        /// Explain for an anonymous request.
        #[arg(long, conflicts_with = "user")]
        anonymous: bool,
        /// The user's groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The provider the identity comes from (default: the first configured).
        #[arg(long)]
        provider: Option<String>,
        /// The identity's claims as a token's payload carries them, a JSON
        /// object: '{"kubernetes.io": {"namespace": "ci"}}'.
        #[arg(long, value_parser = parse_claims)]
        claims: Option<regauth_providers::ClaimSet>,
        /// The service (default: the first configured).
        #[arg(long)]
        service: Option<String>,
        /// A scope such as repository:team/app:pull,push (repeatable).
        #[arg(long, required = true)]
        scope: Vec<String>,
        /// The client's address: rules with `networks` apply only to
        /// requests from inside them.
        #[arg(long)]
        from: Option<std::net::IpAddr>,
    },
    /// Read a password from stdin and print a bcrypt htpasswd line.
    HashPassword {
        /// Prefix the hash with `USER:` (an htpasswd line).
        #[arg(long)]
        user: Option<String>,
        /// bcrypt cost (10-15).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=15))]
        cost: u32,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Refresh tokens (docker's identity tokens).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Team robots: list them, or revoke one (a leaked secret, a team
    /// gone), on every replica that shares the state backend.
    Robots {
        #[command(subcommand)]
        command: RobotsCommand,
    },
    /// Sign this terminal in to a registry through its token server's
    /// browser sign-in (a device code: the IdP's second factor applies),
    /// for docker, podman and skopeo through docker-credential-regauth.
    Login {
        /// The registry, as in image names (registry.corp, 127.0.0.1:5000).
        registry: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Revoke this terminal's login to a registry and forget it.
    Logout {
        /// The registry, as given to `regauth login`.
        registry: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// The shared state (state.dir or Redis).
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
}

/// How `regauth login` and `logout` reach a registry.
#[derive(clap::Args)]
struct Reach {
    /// Speak plain http to the registry (a loopback registry that does
    /// not answer https is reached over http anyway).
    #[arg(long)]
    plain_http: bool,
    /// A PEM file of CA certificates to trust besides the system's.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Never open a browser, even where there is a display.
    #[arg(long)]
    no_browser: bool,
}

impl From<Reach> for regauth::terminal::login::Options {
    fn from(r: Reach) -> Self {
        Self {
            plain_http: r.plain_http,
            ca_file: r.ca_file,
            no_browser: r.no_browser,
        }
    }
}

#[derive(Subcommand)]
enum StateCommand {
    /// Sign the app passwords an earlier version of regauth stored without
    /// a MAC, so that this version accepts them (sign-ins are not: their
    /// users sign in again). Lists them first; run once when upgrading,
    /// while nobody but regauth can write the backend: it vouches for what
    /// the records say.
    Adopt {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Sign them (without it, only list them).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Revoke refresh tokens issued until now, and app passwords: one
    /// user's, or everyone's. Takes effect on every replica that shares
    /// the state backend (state.dir, or Redis).
    Revoke {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum RobotsCommand {
    /// Every team robot that has not expired, with its team, expiry and
    /// scope, and a warning for each whose group is gone.
    List {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Revoke one robot, by its id or its login name (`robot$team+name`).
    Revoke {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        robot: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a private key (PKCS#8 PEM) and a self-signed certificate.
    Generate {
        #[arg(long, value_enum, default_value_t = keys::KeyType::Es256)]
        algorithm: keys::KeyType,
        #[arg(long, default_value = "certs/token.key")]
        key: PathBuf,
        #[arg(long, default_value = "certs/token.crt")]
        certificate: PathBuf,
        /// Certificate lifetime in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[arg(long, default_value = "regauth")]
        common_name: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Write a secret key file (the refresh-token or app-password key):
    /// base64 of 32 random bytes, mode 0600.
    Secret {
        /// The file to write (e.g. certs/refresh.key).
        path: PathBuf,
        /// Overwrite an existing file (what it sealed stops opening).
        #[arg(long)]
        force: bool,
    },
    /// Print the registry's `auth.token` configuration for this regauth.
    RegistryConfig {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Where the registry finds the certificate (default: its path here).
        #[arg(long)]
        rootcertbundle: Option<String>,
        /// `yaml` (the config.yml block), `env` (KEY='value' lines to
        /// source), `jwks` (the JWK set file of a v3 registry), or `all`
        /// (yaml and env, with the key IDs).
        #[arg(long, value_enum, default_value_t = RegistryFormat::All)]
        format: RegistryFormat,
    },
    /// Stage a next signing key: published at once (`/jwks`, the
    /// certificate bundle), signing after `token.rotation_overlap`. With
    /// `--finish`, retire the old key once its last tokens have expired.
    Rotate {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = keys::KeyType::Es256)]
        algorithm: keys::KeyType,
        /// Certificate lifetime in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Make the staged key the current one and forget the old one.
        #[arg(long)]
        finish: bool,
        /// With --finish: even though tokens of the old key may still be valid.
        #[arg(long, requires = "finish")]
        force: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    regauth_providers::install_crypto_provider();
    // Dropped last: flushes the log lines still queued.
    let _log_guard = regauth::ops::logging::init(match cli.log_format {
        LogFormat::Json => regauth::ops::logging::Format::Json,
        LogFormat::Pretty => regauth::ops::logging::Format::Pretty,
    });
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regauth: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a cause whose text the
/// message already contains (`cannot read x: No such file`) is not
/// repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// `--claims`: a JSON object, as a token's payload.
fn parse_claims(text: &str) -> Result<regauth_providers::ClaimSet, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(payload @ serde_json::Value::Object(_)) => {
            Ok(regauth_providers::ClaimSet::of_token(&payload))
        }
        Ok(_) => Err("claims are a JSON object, such as '{\"team\": \"platform\"}'".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(config),
        Command::Explain {
            config,
            user,
            anonymous,
            groups,
            provider,
            claims,
            service,
            scope,
            from,
        } => {
            let config = Config::load(config.as_deref())?;
            let service = service.unwrap_or_else(|| config.token.services[0].clone());
            let principal = if anonymous {
                Principal::Anonymous
            } else {
                let provider = provider
                    .or_else(|| config.providers.first().map(|p| p.name().to_owned()))
                    .unwrap_or_default();
                let groups = groups.into_iter().filter(|g| !g.is_empty());
                let mut identity =
                    Identity::new(user.unwrap_or_default(), provider).with_groups(groups);
                identity.claims = claims.unwrap_or_default();
                Principal::Authenticated(Arc::new(identity))
            };
            let text = regauth::admin::explain::explain(
                &config.policy,
                &principal,
                &service,
                &scope,
                from,
            )?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::HashPassword { user, cost } => hash_password(user, cost),
        Command::Keys { command } => keys(command),
        Command::Tokens {
            command: TokensCommand::Revoke { config, user, all },
        } => revoke(config, if all { None } else { user }),
        Command::Robots { command } => robots(command),
        Command::State {
            command: StateCommand::Adopt { config, yes },
        } => adopt(config, yes),
        Command::Login { registry, reach } => {
            let options = reach.into();
            let mut out = std::io::stdout();
            block_on(regauth::terminal::login::login(
                &registry, &options, &mut out,
            ))?
        }
        Command::Logout { registry, reach } => {
            let options = reach.into();
            let mut out = std::io::stdout();
            block_on(regauth::terminal::login::logout(
                &registry, &options, &mut out,
            ))?
            .map(|_| ())
        }
    }
}

/// `regauth check`: the configuration, its providers and its key files.
fn check(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    if config.providers.is_empty() {
        bail!(regauth::Error::NoProvider);
    }
    let providers = regauth::app::providers(&config)?;
    check_secret_keys(&config)?;
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    let robots = block_on(regauth::admin::robots::check_warnings(&config, &providers))?;
    for warning in robots {
        println!("warning: {warning}");
    }
    println!(
        "{}: ok ({} providers, {} rules, services: {})",
        config.origin,
        providers.len(),
        config.policy.len(),
        config.token.services.join(", ")
    );
    Ok(())
}

/// `regauth robots list|revoke`.
fn robots(command: RobotsCommand) -> anyhow::Result<()> {
    use regauth::admin::robots;
    let (RobotsCommand::List { config } | RobotsCommand::Revoke { config, .. }) = &command;
    let config = Config::load(config.as_deref())?;
    let said = block_on(async {
        match &command {
            // revoking needs no provider (one whose secret is missing
            // must not stand in the way of ending a leaked robot)
            RobotsCommand::List { .. } => {
                let providers = regauth::app::providers(&config).map_err(|e| e.to_string())?;
                robots::list_command(&config, &providers).await
            }
            RobotsCommand::Revoke { robot, .. } => robots::revoke_command(&config, robot).await,
        }
    })?;
    println!("{}", said.map_err(anyhow::Error::msg)?.join("\n"));
    Ok(())
}

/// `regauth hash-password`: a bcrypt hash of the password on stdin.
fn hash_password(user: Option<String>, cost: u32) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from stdin")?;
    // One trailing newline is the terminal's, not the password's.
    let password = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(&input);
    if password.is_empty() {
        bail!("empty password on stdin");
    }
    let hash = bcrypt_hash(password, cost)?;
    match user {
        Some(user) => println!("{user}:{hash}"),
        None => println!("{hash}"),
    }
    Ok(())
}

/// A runtime for one command that talks to the state backend.
fn block_on<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(work))
}

/// `regauth tokens revoke`: one user's refresh tokens and app passwords,
/// or everyone's refresh tokens.
fn revoke(config: Option<PathBuf>, subject: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    // A Redis backend is opened inside the runtime that will use it.
    let done = block_on(async {
        let store = regauth::app::open_state(&config)?;
        let revoking = regauth::admin::offboard::offboard(
            store.clone(),
            config.refresh.lifetime,
            subject.as_deref(),
            config.app_passwords.is_some(),
        );
        revoking
            .await
            .map_err(|e| anyhow::anyhow!("the {} state backend: {e}", store.backend()))
    })??;
    match subject {
        Some(user) => {
            println!("revoked the refresh tokens of {user} (in any case) issued until now")
        }
        None => println!("revoked every refresh token issued until now"),
    }
    if config.app_passwords.is_some() {
        println!("revoked {} app password(s)", done.app_passwords.len());
    }
    Ok(())
}

/// `regauth state adopt`: signs the app-password records an earlier
/// version wrote without a MAC, once, after a dry run.
fn adopt(config: Option<PathBuf>, yes: bool) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let Some(section) = &config.app_passwords else {
        bail!("app passwords are not configured: there is nothing to adopt");
    };
    let key = regauth::keys::load_secret_key(&config.refresh.key_file, "refresh-token")?;
    // A Redis backend is opened inside the runtime that will use it.
    let found = block_on(async {
        let backend = regauth::state::open(&config.state)
            .map_err(|e| anyhow::anyhow!("state backend: {e}"))?;
        let store = regauth::state::Authenticated::new(backend, regauth::state::records_key(&key));
        let adopted =
            regauth::admin::offboard::adopt_app_passwords(&store, section.max_lifetime, yes).await;
        anyhow::Ok(adopted?)
    })??;
    for unsigned in &found {
        let what = match &unsigned.password {
            Some(p) => format!(
                "{} of {} at {} (\"{}\", expires {})",
                unsigned.id, p.subject, p.provider, p.name, p.expires
            ),
            None => unsigned.id.clone(),
        };
        match unsigned.refused {
            Some(why) => println!("not signed: {what}: {why}"),
            None if yes => println!("signed: {what}"),
            None => println!("would sign: {what}"),
        }
    }
    if !yes {
        println!("{} record(s) without a MAC; check that each is yours, then run again with --yes (this is done once)", found.len());
    }
    Ok(())
}

/// The secret key files that exist must be keys (a placeholder left in a
/// Secret is refused here as at startup); missing ones are made at the
/// first start.
fn check_secret_keys(config: &Config) -> anyhow::Result<()> {
    let mut files = vec![(&config.refresh.key_file, "refresh-token")];
    if let Some(section) = &config.app_passwords {
        files.push((&section.key_file, "app-password"));
    }
    for (path, what) in files {
        if path.exists() {
            regauth::keys::load_secret_key(path, what)?;
        } else {
            println!(
                "{}: the {what} key does not exist yet; `regauth serve` makes it (replicas must share one: `regauth keys secret {}`)",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

fn bcrypt_hash(password: &str, cost: u32) -> anyhow::Result<String> {
    regauth_providers::static_users::hash_bcrypt(password, cost).context("hashing the password")
}

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate {
            algorithm,
            key,
            certificate,
            days,
            common_name,
            force,
        } => {
            if days == 0 {
                bail!("--days must be at least 1");
            }
            let (key_pem, cert_pem) =
                keys::generate(algorithm, &common_name, Duration::from_secs(days * 86400))?;
            let if_exists = if force {
                keys::IfExists::Replace
            } else {
                keys::IfExists::Refuse
            };
            keys::write_key_files(&key, &certificate, &key_pem, &cert_pem, if_exists)
                .context("use --force to replace existing files")?;
            let loaded = keys::SigningKey::load(&key, &certificate)?;
            println!("key:         {}", key.display());
            println!("certificate: {}", certificate.display());
            println!("algorithm:   {}", loaded.algorithm.name());
            println!("kid:         {}", loaded.kid);
            Ok(())
        }
        KeysCommand::Secret { path, force } => {
            if force && path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            regauth::keys::write_secret_file(&path, &regauth::keys::new_secret_key_text()?)
                .context("use --force to replace an existing file")?;
            println!("secret key:  {}", path.display());
            Ok(())
        }
        KeysCommand::RegistryConfig {
            config,
            rootcertbundle,
            format,
        } => registry_config(config, rootcertbundle, format),
        KeysCommand::Rotate {
            config,
            algorithm,
            days,
            finish,
            force,
        } => {
            let config = Config::load(config.as_deref())?;
            if finish {
                let when = if force { Retire::Now } else { Retire::WhenSafe };
                finish_rotation(&config, when)
            } else {
                stage_next_key(&config, algorithm, days)
            }
        }
    }
}

/// `regauth keys registry-config`.
fn registry_config(
    config: Option<PathBuf>,
    rootcertbundle: Option<String>,
    format: RegistryFormat,
) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let ring = rotation::key_ring(&config)?;
    let text =
        regauth::admin::registry_config::registry_config(&config, &ring, rootcertbundle, format)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `regauth keys rotate`: stages a next key and says what to do next.
fn stage_next_key(config: &Config, algorithm: keys::KeyType, days: u64) -> anyhow::Result<()> {
    let next = rotation::stage(config, algorithm, days, clock::now())?;
    println!(
        "staged:      {} ({})",
        next.key_file.display(),
        next.algorithm
    );
    println!("next kid:    {}", next.kid);
    println!(
        "signs from:  {} (after token.rotation_overlap)",
        clock::rfc3339(next.switch_at)
    );
    println!(
        "bundle:      {} (current and next certificates)",
        next.bundle.display()
    );
    println!();
    println!("1. Give every registry the bundle as rootcertbundle (or the --format jwks output) and restart it before the switch.");
    println!("2. Running regauth servers publish the next key within seconds (or on SIGHUP).");
    println!(
        "3. After {}, run `regauth keys rotate --finish`.",
        clock::rfc3339(next.retire_after)
    );
    Ok(())
}

/// `regauth keys rotate --finish`: the next key becomes the current one.
fn finish_rotation(config: &Config, when: Retire) -> anyhow::Result<()> {
    let kid = rotation::finish(config, when, clock::now())?;
    println!("current kid: {kid} (the old key is no longer published)");
    println!(
        "Registries may go back to {} as rootcertbundle.",
        config.token.certificate.display()
    );
    Ok(())
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    if config.providers.is_empty() {
        bail!(regauth::Error::NoProvider);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let sibling = config.server.loopback_sibling();
        let ops_listen = config.server.ops_listen;
        let origin = config.origin.clone();
        let state = regauth::build(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!(
            %listen,
            config = %origin,
            realm = %state.realm,
            kid = %state.issuer.keys().signing(clock::now()).kid,
            providers = state.chain.providers().len(),
            state = state.store.backend(),
            tls = state.tls.is_some(),
            "regauth listening"
        );
        let sibling = match sibling {
            Some(addr) => bind_sibling(addr).await?,
            None => None,
        };
        let ops = match ops_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (server.ops_listen)"))?,
            ),
            None => None,
        };
        let live = regauth::Live::new(state);
        spawn_reloader(live.clone(), config_path.clone());
        regauth::app::spawn_file_watcher(live.clone(), config_path, Duration::from_secs(5));
        if let Some(sibling) = sibling {
            let serving = live.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    regauth::http::listen::serve(serving, sibling, shutdown_signal()).await
                {
                    tracing::error!(error = %e, "the second loopback listener stopped");
                }
            });
        }
        if let Some(ops) = ops {
            tracing::info!(listen = %ops.local_addr()?, "operational endpoints listening");
            let serving = live.clone();
            tokio::spawn(async move {
                let only = regauth::http::listen::Serves::Operations;
                if let Err(e) =
                    regauth::http::listen::serve_only(serving, ops, only, shutdown_signal()).await
                {
                    tracing::error!(error = %e, "the operational listener stopped");
                }
            });
        }
        regauth::http::listen::serve(live, listener, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The other loopback address of a realm that names `localhost`: taken
/// by someone else, regauth does not start (clients resolving `localhost`
/// there would hand them passwords); absent (no IPv6), nothing to guard.
async fn bind_sibling(
    addr: std::net::SocketAddr,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use std::io::ErrorKind;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if e.kind() == ErrorKind::AddrInUse => bail!(
            "{addr} is taken by another process: the realm names localhost, which clients may resolve to {addr}; free it, or set server.realm"
        ),
        Err(e) => {
            tracing::debug!(%addr, error = %e, "no second loopback listener");
            Ok(None)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining requests"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining requests"),
    }
}

/// SIGHUP re-reads the whole configuration and swaps it in; a bad one is
/// logged with what is wrong, and the running state stays.
fn spawn_reloader(live: Arc<regauth::Live>, config_path: Option<PathBuf>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            match regauth::reload(&live, config_path.as_deref()) {
                Ok(state) => tracing::info!(
                    config = %state.config.origin,
                    providers = state.chain.providers().len(),
                    rules = state.policy.len(),
                    kid = %state.issuer.keys().signing(clock::now()).kid,
                    "SIGHUP: configuration reloaded"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: the new configuration is not valid; still serving the previous one"
                ),
            }
        }
    });
}

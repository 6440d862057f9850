//! The `regauth` command line: serve, check, explain, hash-password, keys.
//! Only argument handling and process concerns (logging, signals) live here.

#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use regauth::clock;
use regauth::config::Config;
use regauth::domain::policy::Principal;
use regauth::domain::scope::{join_actions, Scope};
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
        /// The service (default: the first configured).
        #[arg(long)]
        service: Option<String>,
        /// A scope such as repository:team/app:pull,push (repeatable).
        #[arg(long, required = true)]
        scope: Vec<String>,
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
    /// The shared state (state.dir or Redis).
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RegistryFormat {
    Yaml,
    Env,
    /// The JWK set a v3 registry reads (`auth.token.jwks`).
    Jwks,
    All,
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

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => {
            let config = Config::load(config.as_deref())?;
            if config.providers.is_empty() {
                bail!(regauth::Error::NoProvider);
            }
            let policy = config.policy.clone();
            let providers = regauth::app::providers(&config)?;
            check_secret_keys(&config)?;
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            println!(
                "{}: ok ({} providers, {} rules, services: {})",
                config.origin,
                providers.len(),
                policy.len(),
                config.token.services.join(", ")
            );
            Ok(())
        }
        Command::Explain {
            config,
            user,
            anonymous,
            groups,
            provider,
            service,
            scope,
        } => {
            let config = Config::load(config.as_deref())?;
            let policy = config.policy.clone();
            let service = service.unwrap_or_else(|| config.token.services[0].clone());
            let principal = if anonymous {
                Principal::Anonymous
            } else {
                let provider = provider
                    .or_else(|| config.providers.first().map(|p| p.name().to_owned()))
                    .unwrap_or_default();
                let user = user.unwrap_or_default();
                Principal::Authenticated(Arc::new(
                    Identity::new(user, provider)
                        .with_groups(groups.into_iter().filter(|g| !g.is_empty())),
                ))
            };
            let mut out = std::io::stdout().lock();
            for raw in &scope {
                let Some(scope) = Scope::parse(raw) else {
                    bail!("`{raw}` is not a scope like repository:name:pull,push");
                };
                let grant = policy.explain(&principal, &service, &scope);
                writeln!(out, "scope {scope} (service {service}):")?;
                if grant.trace.is_empty() {
                    writeln!(out, "  no rule matched")?;
                }
                for m in &grant.trace {
                    let desc = m
                        .description
                        .as_deref()
                        .map(|d| format!(" \"{d}\""))
                        .unwrap_or_default();
                    writeln!(
                        out,
                        "  rule[{}]{desc}: {} on {}: allows [{}] denies [{}]",
                        m.rule,
                        m.because,
                        m.repo,
                        join_actions(&m.allows),
                        join_actions(&m.denies)
                    )?;
                }
                writeln!(out, "  granted: [{}]", join_actions(&grant.actions))?;
            }
            Ok(())
        }
        Command::HashPassword { user, cost } => {
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
        Command::Keys { command } => keys(command),
        Command::Tokens {
            command: TokensCommand::Revoke { config, user, all },
        } => {
            let config = Config::load(config.as_deref())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let subject = if all { None } else { user.as_deref() };
            runtime.block_on(async {
                let store = regauth::app::open_state(&config)?;
                let done = regauth::admin::offboard::offboard(
                    store.clone(),
                    config.refresh.lifetime,
                    subject,
                    config.app_passwords.is_some(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("the {} state backend: {e}", store.backend()))?;
                match subject {
                    Some(user) => println!(
                        "revoked the refresh tokens of {user} (in any case) issued until now"
                    ),
                    None => println!("revoked every refresh token issued until now"),
                }
                if config.app_passwords.is_some() {
                    println!("revoked {} app password(s)", done.app_passwords.len());
                }
                anyhow::Ok(())
            })?;
            Ok(())
        }
        Command::State {
            command: StateCommand::Adopt { config, yes },
        } => {
            let config = Config::load(config.as_deref())?;
            let Some(section) = &config.app_passwords else {
                bail!("app passwords are not configured: there is nothing to adopt");
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let backend = regauth::state::open(&config.state)
                    .map_err(|e| anyhow::anyhow!("state backend: {e}"))?;
                let key =
                    regauth::keys::load_secret_key(&config.refresh.key_file, "refresh-token")?;
                let store = regauth::state::Authenticated::new(
                    backend.clone(),
                    regauth::state::records_key(&key),
                );
                let found =
                    regauth::admin::offboard::adopt_app_passwords(&store, section.max_lifetime, yes)
                        .await?;
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
                anyhow::Ok(())
            })?;
            Ok(())
        }
    }
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

/// The keys a registry must trust now, without generating any.
fn key_ring(config: &Config) -> anyhow::Result<regauth::keys::KeyRing> {
    let current = keys::SigningKey::load(&config.token.key, &config.token.certificate)
        .context("run `regauth keys generate` or `regauth serve` once to create the key")?;
    let next = regauth::keys::load_staged(
        &config.token.next_key,
        &config.token.next_certificate,
        config.token.rotation_overlap,
    )?;
    Ok(regauth::keys::KeyRing { current, next })
}

/// `certs/token.crt` -> `certs/token.bundle.crt`: current and next.
fn bundle_path(certificate: &std::path::Path) -> PathBuf {
    let stem = certificate
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    certificate.with_file_name(format!("{stem}.bundle.crt"))
}

fn absolute(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

fn registry_config(
    config: Option<PathBuf>,
    rootcertbundle: Option<String>,
    format: RegistryFormat,
) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let ring = key_ring(&config)?;
    let mut out = std::io::stdout().lock();
    if format == RegistryFormat::Jwks {
        writeln!(out, "{}", serde_json::to_string_pretty(&ring.jwks())?)?;
        return Ok(());
    }
    // During a rotation the registry must trust both keys: the bundle.
    let bundle = rootcertbundle.unwrap_or_else(|| match &ring.next {
        Some(_) => absolute(&bundle_path(&config.token.certificate)),
        None => absolute(&config.token.certificate),
    });
    let settings = [
        ("REALM", "realm", config.realm()),
        ("SERVICE", "service", config.token.services[0].clone()),
        ("ISSUER", "issuer", config.token.issuer.clone()),
        ("ROOTCERTBUNDLE", "rootcertbundle", bundle),
    ];
    let algorithms: Vec<&str> = ring.published().map(|k| k.algorithm.name()).collect();
    if format != RegistryFormat::Env {
        writeln!(out, "# registry config.yml (distribution v2.8 and v3)")?;
        writeln!(out, "auth:\n  token:")?;
        for (_, key, value) in &settings {
            writeln!(
                out,
                "    {key}: {}",
                serde_json::Value::from(value.as_str())
            )?;
        }
        writeln!(
            out,
            "    # v3 trusting a JWK set instead (token.x5c = false in regauth, and no rootcertbundle):"
        )?;
        writeln!(
            out,
            "    # jwks: \"/etc/distribution/regauth.jwks\"   # regauth keys registry-config --format jwks"
        )?;
        writeln!(out, "    # signingalgorithms: {algorithms:?}")?;
    }
    if format == RegistryFormat::All {
        writeln!(out, "\n# or as environment variables")?;
    }
    if format != RegistryFormat::Yaml {
        writeln!(out, "REGISTRY_AUTH=token")?;
        for (name, _, value) in &settings {
            writeln!(
                out,
                "REGISTRY_AUTH_TOKEN_{name}='{}'",
                value.replace('\'', r"'\''")
            )?;
        }
    }
    if format == RegistryFormat::All {
        writeln!(
            out,
            "\n# signing key id (libtrust kid): {}",
            ring.current.kid
        )?;
        if let Some(next) = &ring.next {
            writeln!(
                out,
                "# next key id: {}, signing from {}",
                next.key.kid,
                clock::rfc3339(next.switch_at)
            )?;
        }
    }
    Ok(())
}

fn stage_next_key(config: &Config, algorithm: keys::KeyType, days: u64) -> anyhow::Result<()> {
    let ring = key_ring(config)?;
    if let Some(next) = &ring.next {
        bail!(
            "a rotation is under way: the next key {} signs from {}; run `regauth keys rotate --finish` once the old key's tokens have expired ({} or later)",
            next.key.kid,
            clock::rfc3339(next.switch_at),
            clock::rfc3339(next.switch_at + config.token.longest_lifetime().as_secs() as i64)
        );
    }
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let (key_pem, cert_pem) = keys::generate(
        algorithm,
        &config.token.issuer,
        Duration::from_secs(days * 86400),
    )?;
    let (next_key, next_cert) = (&config.token.next_key, &config.token.next_certificate);
    keys::write_key_files(
        next_key,
        next_cert,
        &key_pem,
        &cert_pem,
        keys::IfExists::Refuse,
    )?;
    let staged_at = clock::now();
    let marker = regauth::keys::staged_marker(next_key);
    std::fs::write(&marker, format!("{staged_at}\n"))
        .with_context(|| format!("writing {}", marker.display()))?;
    let ring = key_ring(config)?;
    let bundle = bundle_path(&config.token.certificate);
    std::fs::write(&bundle, ring.bundle_pem())
        .with_context(|| format!("writing {}", bundle.display()))?;
    let next = ring
        .next
        .as_ref()
        .context("the staged key could not be read back")?;
    println!(
        "staged:      {} ({})",
        next_key.display(),
        next.key.algorithm.name()
    );
    println!("next kid:    {}", next.key.kid);
    println!(
        "signs from:  {} (after token.rotation_overlap)",
        clock::rfc3339(next.switch_at)
    );
    println!(
        "bundle:      {} (current and next certificates)",
        bundle.display()
    );
    println!();
    println!("1. Give every registry the bundle as rootcertbundle (or the --format jwks output) and restart it before the switch.");
    println!("2. Running regauth servers publish the next key within seconds (or on SIGHUP).");
    println!(
        "3. After {}, run `regauth keys rotate --finish`.",
        clock::rfc3339(next.switch_at + config.token.longest_lifetime().as_secs() as i64)
    );
    Ok(())
}

/// When `keys rotate --finish` may retire the old key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retire {
    /// Once no token it signed can still be valid.
    WhenSafe,
    /// Now (`--force`): tokens it signed stop working.
    Now,
}

fn finish_rotation(config: &Config, when: Retire) -> anyhow::Result<()> {
    let ring = key_ring(config)?;
    let Some(next) = &ring.next else {
        bail!(
            "no rotation is under way (no {})",
            config.token.next_key.display()
        );
    };
    let retire_after = next.switch_at + config.token.longest_lifetime().as_secs() as i64;
    if clock::now() < retire_after && when == Retire::WhenSafe {
        bail!(
            "tokens of the old key {} may be valid until {}: finish after that (or --force)",
            ring.current.kid,
            clock::rfc3339(retire_after)
        );
    }
    let kid = next.key.kid.clone();
    std::fs::rename(&config.token.next_key, &config.token.key).with_context(|| {
        format!(
            "moving {} to {}",
            config.token.next_key.display(),
            config.token.key.display()
        )
    })?;
    std::fs::rename(&config.token.next_certificate, &config.token.certificate).with_context(
        || {
            format!(
                "moving {} to {}",
                config.token.next_certificate.display(),
                config.token.certificate.display()
            )
        },
    )?;
    let _ = std::fs::remove_file(regauth::keys::staged_marker(&config.token.next_key));
    let bundle = bundle_path(&config.token.certificate);
    let _ = std::fs::copy(&config.token.certificate, &bundle);
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

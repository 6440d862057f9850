//! The `regauth` command line: serve, check, explain, hash-password, keys.
//! Only argument handling and process concerns (logging, signals) live here.

#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use regauth::config::Config;
use regauth::policy::Principal;
use regauth::scope::Scope;
use regauth::token;
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
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Revoke refresh tokens issued until now: one user's, or everyone's.
    /// Takes effect on every replica that shares refresh_tokens.state_dir.
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
    All,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a private key (PKCS#8 PEM) and a self-signed certificate.
    Generate {
        #[arg(long, value_enum, default_value_t = token::KeyType::Es256)]
        algorithm: token::KeyType,
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
    /// Print the registry's `auth.token` configuration for this regauth.
    RegistryConfig {
        #[arg(long, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Where the registry finds the certificate (default: its path here).
        #[arg(long)]
        rootcertbundle: Option<String>,
        /// `yaml` (the config.yml block), `env` (KEY='value' lines to
        /// source), or `all` (both, with the key ID).
        #[arg(long, value_enum, default_value_t = RegistryFormat::All)]
        format: RegistryFormat,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    regauth_providers::install_crypto_provider();
    // Dropped last: flushes the log lines still queued.
    let _log_guard = regauth::logging::init(match cli.log_format {
        LogFormat::Json => regauth::logging::Format::Json,
        LogFormat::Pretty => regauth::logging::Format::Pretty,
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
            let policy = config.load_policy()?;
            let providers = regauth::providers(&config)?;
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
            let policy = config.load_policy()?;
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
                        m.allows.join(","),
                        m.denies.join(",")
                    )?;
                }
                writeln!(out, "  granted: [{}]", grant.actions.join(","))?;
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
            use regauth::refresh::{FileStore, RevocationStore as _};
            let config = Config::load(config.as_deref())?;
            let store = FileStore::new(&config.refresh.state_dir);
            match (user, all) {
                (Some(user), _) => {
                    store.revoke_subject(&user)?;
                    println!("revoked the refresh tokens of {user} issued until now");
                }
                (None, _) => {
                    store.revoke_all()?;
                    println!("revoked every refresh token issued until now");
                }
            }
            Ok(())
        }
    }
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
                token::generate(algorithm, &common_name, Duration::from_secs(days * 86400))?;
            token::write_key_files(&key, &certificate, &key_pem, &cert_pem, force)
                .context("use --force to replace existing files")?;
            let loaded = token::SigningKey::load(&key, &certificate)?;
            println!("key:         {}", key.display());
            println!("certificate: {}", certificate.display());
            println!("algorithm:   {}", loaded.algorithm.name());
            println!("kid:         {}", loaded.kid);
            Ok(())
        }
        KeysCommand::RegistryConfig {
            config,
            rootcertbundle,
            format,
        } => {
            let config = Config::load(config.as_deref())?;
            let key = token::SigningKey::load(&config.token.key, &config.token.certificate)
                .context("run `regauth keys generate` or `regauth serve` once to create the key")?;
            let bundle = rootcertbundle.unwrap_or_else(|| {
                std::fs::canonicalize(&config.token.certificate)
                    .unwrap_or_else(|_| config.token.certificate.clone())
                    .display()
                    .to_string()
            });
            let settings = [
                ("REALM", "realm", config.realm()),
                ("SERVICE", "service", config.token.services[0].clone()),
                ("ISSUER", "issuer", config.token.issuer.clone()),
                ("ROOTCERTBUNDLE", "rootcertbundle", bundle),
            ];
            let mut out = std::io::stdout().lock();
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
                writeln!(out, "    # v3 may also use a jwks file (GET /jwks) and:")?;
                writeln!(
                    out,
                    "    # signingalgorithms: [\"{}\"]",
                    key.algorithm.name()
                )?;
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
                writeln!(out, "\n# signing key id (libtrust kid): {}", key.kid)?;
            }
            Ok(())
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let origin = config.origin.clone();
        let state = regauth::build(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!(
            %listen,
            config = %origin,
            realm = %state.realm,
            kid = %state.key.kid,
            providers = state.chain.providers().len(),
            "regauth listening"
        );
        spawn_policy_reloader(state.clone());
        regauth::serve(state, listener, shutdown_signal()).await?;
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

fn spawn_policy_reloader(state: Arc<regauth::AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: policy reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            match state.reload_policy() {
                Ok(rules) => tracing::info!(rules, "policy reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "policy reload failed; keeping the old policy")
                }
            }
        }
    });
}

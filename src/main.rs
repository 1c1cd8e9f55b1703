//! The `hearken` binary: parse the command line, load the config, set up
//! tracing, run.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hearken::config::{Config, DEVELOPMENT_TOKEN};
use tracing::{info, warn};

/// The log filter without `HEARKEN_LOG`. The SIP stack logs every message it
/// sends or receives, whole, at `info` (Authorization headers included):
/// only its warnings are shown.
const DEFAULT_LOG: &str = "info,rsipstack=warn";

/// Hearken media server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve {
        /// TOML config file; without one the embedded defaults apply.
        #[arg(long, env = "HEARKEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Recording consent tools.
    Consent {
        /// TOML config file (for consent.* defaults).
        #[arg(long, env = "HEARKEN_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: ConsentCmd,
    },
    /// Recording policy tools.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Print the effective config (defaults, file, then HEARKEN_* overrides).
    Config {
        /// TOML config file.
        #[arg(long, env = "HEARKEN_CONFIG")]
        config: Option<PathBuf>,
        /// Print tokens instead of redacting them.
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConsentCmd {
    /// Print the consent mode of a call and why, per participant.
    Explain(hearken::cli::consent::ExplainArgs),
    /// Check a call's consent audit log (hash chain, and the head call.json
    /// records); exits non-zero naming the first bad line.
    Verify(hearken::cli::consent::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Print which meetings of a calendar are recorded, how, and why.
    Explain(hearken::cli::policy::PolicyExplainArgs),
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<hearken::config::Loaded> {
    Config::load(path, std::env::vars()).context("invalid configuration")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Config {
            config,
            show_secrets,
        } => {
            let loaded = load(config.as_deref())?;
            for var in &loaded.unknown_env {
                eprintln!("warning: {var} matches no config key");
            }
            print!("{}", loaded.config.to_toml(show_secrets));
            Ok(())
        }
        Command::Serve { config } => serve(config),
        Command::Policy {
            cmd: PolicyCmd::Explain(args),
        } => {
            print!("{}", hearken::cli::policy::explain(args)?);
            Ok(())
        }
        Command::Consent {
            config,
            cmd: ConsentCmd::Explain(args),
        } => {
            let consent = load(config.as_deref())?.config.consent;
            print!("{}", hearken::cli::consent::explain(args, &consent)?);
            Ok(())
        }
        Command::Consent {
            cmd: ConsentCmd::Verify(args),
            ..
        } => {
            print!("{}", hearken::cli::consent::verify(args)?);
            Ok(())
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARKEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    // Stderr, as the README says: stdout stays for what a command prints.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let loaded = load(config_path.as_deref())?;
    for var in &loaded.unknown_env {
        warn!(variable = %var, "environment variable matches no config key; ignored");
    }
    let config = loaded.config;
    match &config_path {
        Some(p) => info!(config = %p.display(), "config loaded"),
        None => info!("no config file: running on embedded defaults"),
    }
    if config.accepts_development_token() {
        warn!(
            "!!! auth.tokens accepts the development token '{DEVELOPMENT_TOKEN}': anyone who has \
             read the README can send calls to this server. Set HEARKEN_AUTH_TOKENS (or \
             auth.tokens) before exposing it. !!!"
        );
    }
    info!(
        data_dir = %config.storage.data_dir.display(),
        advertised_ip = %config.media.advertised_ip,
        port_base = config.media.port_base,
        workers = config.worker_count(),
        "media settings"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hearken-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
        let server = hearken::server::start(config, listener, shutdown_signal())
            .await
            .context("cannot start the server")?;
        server.wait().await.context("http server failed")?;
        info!("stopped cleanly");
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C. A second signal during the drain exits at
/// once.
async fn shutdown_signal() {
    wait_for_signal().await;
    info!("signal received: draining (send again to force)");
    tokio::spawn(async {
        wait_for_signal().await;
        warn!("second signal: exiting without finishing calls");
        std::process::exit(1);
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

//! `hearken-fake-deepgram --listen 127.0.0.1:PORT --key KEY`: run the fake
//! Deepgram live server standalone (loopback only) until Ctrl-C.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

/// A fake Deepgram live streaming server for tests and load runs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; must be loopback (127.0.0.0/8 or ::1).
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: SocketAddr,
    /// API key clients must send as `Authorization: Token KEY`.
    #[arg(long, env = "DEEPGRAM_API_KEY", hide_env_values = true)]
    key: String,
    /// Seconds without audio or KeepAlive before closing with NET-0001.
    #[arg(long, default_value_t = 10.0)]
    idle_timeout_secs: f64,
    /// RMS (linear16 units) at or above which a 0.5 s window is a word.
    #[arg(long, default_value_t = 500.0)]
    rms_threshold: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout_secs)
        .context("--idle-timeout-secs must be a non-negative number")?;
    let fake = FakeDeepgram::try_start(FakeConfig {
        listen: args.listen,
        api_key: args.key,
        idle_timeout,
        rms_threshold: args.rms_threshold,
        // Nobody reads the record of a standalone run; keep memory flat.
        record_audio: false,
    })
    .await
    .context("starting the fake Deepgram server")?;
    tracing::info!(url = %fake.url(), "fake Deepgram listening");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let record = fake.record();
    tracing::info!(
        connections = record.connections.len(),
        rejected = record.rejected.len(),
        "fake Deepgram stopping"
    );
    Ok(())
}

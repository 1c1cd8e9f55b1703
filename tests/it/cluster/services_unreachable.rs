//! NATS or PostgreSQL not there when a node starts: it exits at once with
//! an error that names the setting to fix.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearken_testkit::services::PrivateNats;

use crate::common::free_port;

/// Runs `hearken serve` with `env`, expecting it to exit non-zero within
/// 20 s; its stderr.
fn start_failure(env: &[(&str, String)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearken"));
    command
        .arg("serve")
        .env("HEARKEN_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HEARKEN_MEDIA_PORT_BASE", "0")
        .env("HEARKEN_MEDIA_WORKERS", "1")
        .env("HEARKEN_STORAGE_DATA_DIR", data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let output = command.output().expect("hearken runs");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?} to give up",
        started.elapsed()
    );
    assert!(
        !output.status.success(),
        "a node without its services must not start"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn no_nats_at_start_is_a_clear_error() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let stderr = start_failure(&[("HEARKEN_CLUSTER_NATS_URL", url.clone())]);
    assert!(stderr.contains("cluster.nats_url"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
fn no_postgres_at_start_is_a_clear_error() {
    let nats = PrivateNats::start().expect("private NATS starts");
    let url = format!("postgres://hearken@127.0.0.1:{}/hearken", free_port());
    let stderr = start_failure(&[
        ("HEARKEN_CLUSTER_NATS_URL", nats.url()),
        ("HEARKEN_STORE_POSTGRES_URL", url.clone()),
    ]);
    assert!(stderr.contains("store.postgres_url"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

//! SIP dial-in against a real, independent SIP stack (SIPp, Debian's
//! `sip-tester`, driven by the scenarios in `tests/fixtures/sipp/`), and
//! raw SIP text for what no well-behaved stack sends.
//! A real phone (baresip) dials in end to end in `baresip_dial_in`.

mod auth;
mod baresip_dial_in;
mod dialogs;
mod load;
mod malformed;
mod mixed_call;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hearken::metrics::IngestError;
use hearken_core::conference::Ingest;

use crate::common::TestServer;

/// Starts a server with SIP on an OS-chosen port.
pub async fn sip_server() -> TestServer {
    TestServer::start_with(|c| c.ingest.sip.listen = "127.0.0.1:0".into()).await
}

/// The SIP address of a test server.
pub fn sip_addr(server: &TestServer) -> SocketAddr {
    server
        .server
        .as_ref()
        .and_then(|s| s.state.sip.as_ref())
        .expect("SIP is on")
        .local_addr
}

/// A SIP ingest error counter of a test server.
pub fn sip_errors(server: &TestServer, reason: IngestError) -> u64 {
    server
        .server
        .as_ref()
        .expect("running")
        .state
        .metrics
        .ingest_errors_of(Ingest::Sip)
        .get(reason)
        .get()
}

/// Sessions the registry holds once the workers' reports of ended ones
/// have reached it (up to 2.5 s).
pub async fn settled_sessions(server: &TestServer) -> usize {
    for _ in 0..50 {
        if sessions(server) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sessions(server)
}

/// Sessions the server's registry holds.
pub fn sessions(server: &TestServer) -> usize {
    server
        .server
        .as_ref()
        .expect("running")
        .state
        .registry
        .session_count()
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sipp")
        .join(name)
}

/// A port free for SIPp on loopback now (UDP and TCP).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How SIPp reaches Hearken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
}

/// Runs one call of a SIPp scenario against `target`; panics with SIPp's
/// error log when the scenario fails (an unexpected or missing message).
pub async fn sipp(
    target: SocketAddr,
    file: &str,
    service: &str,
    transport: SipTransport,
    extra: &[&str],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let errors = dir.path().join("errors.log");
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.current_dir(dir.path())
        .arg(target.to_string())
        .arg("-sf")
        .arg(scenario(file))
        .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
        .args(["-i", "127.0.0.1", "-s", service])
        .args(["-p", &free_port().to_string()])
        .args(["-mp", &free_port().to_string()])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&errors)
        .args(extra)
        .kill_on_drop(true);
    if transport == SipTransport::Tcp {
        cmd.args(["-t", "t1"]);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("SIPp finished")
        .expect("SIPp runs (tests/peers/install.sh sipp)");
    if !output.status.success() {
        let log = std::fs::read_to_string(&errors).unwrap_or_default();
        panic!(
            "SIPp scenario {file} failed ({}):\n{log}\n--- stdout ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_is_answered_over_udp_and_tcp() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    sipp(addr, "options.xml", "ping", SipTransport::Udp, &[]).await;
    sipp(addr, "options.xml", "ping", SipTransport::Tcp, &[]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_is_off_unless_configured() {
    let server = TestServer::start().await;
    assert!(server.server.as_ref().unwrap().state.sip.is_none());
    server.shutdown().await;
}

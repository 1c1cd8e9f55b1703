//! The real `hearken` binary as a child process on a data directory the
//! test keeps across restarts, with its log in a file the test can read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestServer;

/// The binary, serving on loopback.
pub struct Binary {
    child: Child,
    /// The test client's view of it (its own `data_dir` is an unused
    /// temporary directory: the binary's is the one it was started on).
    pub http: TestServer,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
    /// Holds `log`.
    _log_dir: tempfile::TempDir,
}

impl Binary {
    /// Starts `hearken serve` on `data` with the test defaults (media-spine
    /// consent: nobody's location is known and that needs no consent) and
    /// `env` on top, and waits until `/readyz` answers 200.
    pub async fn start(data: &Path, env: &[(&str, String)]) -> Self {
        let binary = Self::spawn(data, env).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = binary
                .http
                .client
                .get(binary.http.url("/readyz"))
                .send()
                .await
                && r.status() == 200
            {
                return binary;
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up: {}",
                binary.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn spawn(data: &Path, env: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("hearken.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearken"));
        command
            .arg("serve")
            .env("HEARKEN_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("HEARKEN_MEDIA_PORT_BASE", "0")
            .env("HEARKEN_MEDIA_WORKERS", "1")
            .env("HEARKEN_CONSENT_GRACE_PERIOD_MS", "0")
            .env("HEARKEN_CONSENT_UNKNOWN_LOCATION_MODE", "none")
            .env("HEARKEN_STORAGE_DATA_DIR", data)
            .env("HEARKEN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        let http = TestServer {
            server: None,
            http: format!("127.0.0.1:{port}").parse().unwrap(),
            data_dir: tempfile::tempdir().unwrap(),
            client: reqwest::Client::new(),
        };
        Self {
            child,
            http,
            log,
            _log_dir: log_dir,
        }
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit status once it is gone (within 20 s).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

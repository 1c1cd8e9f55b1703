//! A Hearken server in this process, on loopback, with its own data
//! directory; and reading its metrics.

use std::net::SocketAddr;
use std::path::PathBuf;

use hearken::config::Config;
use hearken::server::{RunningServer, Secrets, start_with_secrets};

use super::request_json;

/// The development token the default config accepts.
pub const TOKEN: &str = "hearken-dev";

/// A server running in this process, with its own data directory.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub http: SocketAddr,
    pub data_dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Starts a server on loopback with OS-chosen ports.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after letting the test adjust the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_secrets(adjust, Secrets::from_pairs([])).await
    }

    /// Starts a server with `secrets` as its environment for secrets.
    pub async fn start_with_secrets(adjust: impl FnOnce(&mut Config), secrets: Secrets) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.storage.data_dir = data_dir.path().to_owned();
        config.media.port_base = 0;
        config.media.workers = 2;
        // Media-spine tests: nobody's location is known, and the company
        // says that needs no consent (the shipped default is `explicit`),
        // so capture runs from the first frame. Consent tests set their own.
        config.consent.unknown_location_mode =
            Some(hearken_core::consent::rules::ConsentMode::None);
        config.consent.grace_period_ms = 0;
        // The speech recogniser (a model load and a thread per server) only
        // where a test listens for spoken consent.
        config.consent.verbal = false;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let server = start_with_secrets(config, listener, std::future::pending(), secrets)
            .await
            .expect("server starts");
        let http = server.http_addr;
        Self {
            server: Some(server),
            http,
            data_dir,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn call_dir(&self, call_id: &str) -> PathBuf {
        self.data_dir.path().join("calls").join(call_id)
    }

    /// `POST /whip/{call_id}` with an SDP body.
    pub async fn post_offer(&self, call_id: &str, sdp: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/whip/{call_id}")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/sdp")
            .body(sdp.to_owned())
            .send()
            .await
            .expect("http")
    }

    pub async fn delete(&self, location: &str) -> reqwest::Response {
        self.client
            .delete(self.url(location))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("http")
    }

    pub async fn call_json(&self, call_id: &str) -> serde_json::Value {
        request_json(self, reqwest::Method::GET, &format!("/v1/calls/{call_id}")).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("http")
            .text()
            .await
            .expect("text")
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Sum of a counter in Prometheus text (all label sets).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

//! A fleet on loopback: private NATS (JetStream) and PostgreSQL instances
//! and Hearken nodes as real processes (the `hearken` binary), each with its
//! own HTTP port, media ports and data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearken_testkit::services::{PrivateNats, PrivatePostgres};

use super::TestServer;

/// Heartbeat of the test fleet's nodes: a node is out of placement after
/// three of them.
pub const HEARTBEAT_MS: u64 = 200;

/// One node: its process and a handle the shared kit can use.
pub struct FleetNode {
    /// `cluster.node_id`.
    pub id: String,
    /// The process (taken once it is waited for).
    pub child: Option<Child>,
    /// Its HTTP address, data directory and a client that does not follow
    /// redirects (so a test sees the 307).
    pub server: TestServer,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl FleetNode {
    /// Its base URL (`cluster.advertised_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.http)
    }

    /// Its log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for the process to exit; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }
}

impl Drop for FleetNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// NATS, PostgreSQL and the nodes.
pub struct Fleet {
    pub nats: PrivateNats,
    pub postgres: PrivatePostgres,
    pub nodes: Vec<FleetNode>,
}

impl Fleet {
    /// Starts the services and `ids.len()` nodes, and waits until every
    /// node sees every other one.
    pub async fn start(ids: &[&str]) -> Self {
        Self::start_with(ids, &[]).await
    }

    /// Like [`Self::start`], every node with `extra` environment too.
    pub async fn start_with(ids: &[&str], extra: &[(&str, String)]) -> Self {
        let nats = PrivateNats::start().expect("private NATS starts");
        let postgres = PrivatePostgres::start().expect("private PostgreSQL starts");
        let mut fleet = Self {
            nats,
            postgres,
            nodes: Vec::new(),
        };
        for id in ids {
            let node = fleet.spawn(id, extra);
            fleet.nodes.push(node);
        }
        for i in 0..fleet.nodes.len() {
            fleet.wait_ready(i).await;
        }
        fleet.wait_for_members(ids.len()).await;
        fleet
    }

    /// Starts node `id` (not added to `nodes`) with `extra` environment.
    pub fn spawn(&self, id: &str, extra: &[(&str, String)]) -> FleetNode {
        let port = free_port();
        let data = tempfile::tempdir().expect("tempdir");
        let log = data.path().join("hearken.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let http: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearken"));
        command
            .arg("serve")
            .env("HEARKEN_LOG", "info,rsipstack=warn")
            .env("HEARKEN_HTTP_LISTEN", http.to_string())
            .env("HEARKEN_MEDIA_PORT_BASE", "0")
            .env("HEARKEN_MEDIA_WORKERS", "1")
            .env("HEARKEN_CONSENT_GRACE_PERIOD_MS", "0")
            // Nobody's location is given: the company says that needs no
            // consent, so capture runs from the first frame.
            .env("HEARKEN_CONSENT_UNKNOWN_LOCATION_MODE", "none")
            .env("HEARKEN_CONSENT_VERBAL", "false")
            .env("HEARKEN_STORAGE_DATA_DIR", data.path())
            .env("HEARKEN_CLUSTER_NATS_URL", self.nats.url())
            .env("HEARKEN_CLUSTER_NODE_ID", id)
            .env("HEARKEN_CLUSTER_HEARTBEAT_MS", HEARTBEAT_MS.to_string())
            .env("HEARKEN_STORE_POSTGRES_URL", self.postgres.url())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("hearken starts");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        FleetNode {
            id: (*id).to_owned(),
            child: Some(child),
            server: TestServer {
                server: None,
                http,
                data_dir: data,
                client,
            },
            log,
        }
    }

    /// Waits until node `i` answers `/readyz` 200.
    pub async fn wait_ready(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = node
                .server
                .client
                .get(node.server.url("/readyz"))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "node {} exited with {status}:\n{}",
                    node.id,
                    node.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not come up:\n{}",
                node.id,
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node lists `n` live nodes.
    pub async fn wait_for_members(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let nodes = self.cluster_nodes(node).await;
                if nodes.len() == n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} sees {} nodes, not {n}: {nodes:?}",
                    node.id,
                    nodes.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `GET /v1/cluster/nodes` of `node`: the node ids it lists.
    pub async fn cluster_nodes(&self, node: &FleetNode) -> Vec<String> {
        let Ok(r) = node
            .server
            .client
            .get(node.server.url("/v1/cluster/nodes"))
            .bearer_auth(super::TOKEN)
            .send()
            .await
        else {
            return Vec::new();
        };
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        body["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["node_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The node whose base URL is `url`.
    pub fn node_at(&self, url: &str) -> &FleetNode {
        let url = url.trim_end_matches('/');
        self.nodes
            .iter()
            .find(|n| url.starts_with(&n.url()))
            .unwrap_or_else(|| panic!("no node at {url}"))
    }

    /// Where a new session of `call_id` posted to node `entry` goes: the
    /// owner's base URL (the entry itself when it answers without a
    /// redirect). Posts a throwaway offer; a 201 session is deleted again.
    pub async fn owner_of(&self, entry: usize, call_id: &str) -> String {
        let node = &self.nodes[entry];
        let offer = super::offer_sdp(&["probe"], str0m::media::Direction::SendOnly);
        let r = node.server.post_offer(call_id, &offer).await;
        match r.status().as_u16() {
            307 => {
                let location = r.headers()["location"].to_str().expect("ascii").to_owned();
                location
                    .strip_suffix(&format!("/whip/{call_id}"))
                    .expect("redirect to the owner's WHIP endpoint")
                    .to_owned()
            }
            status => panic!(
                "POST answered {status}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
}

/// A port free now on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

//! Sends join requests to the provider's webhook for meetings recorded by
//! the assistant method, `policy.join_lead_seconds` before they start.
//!
//! Each request is an HTTP POST of a JSON [`JoinRequest`], signed with
//! HMAC-SHA256 over `"{timestamp}.{body}"` (headers `X-Hearken-Timestamp`
//! and `X-Hearken-Signature: sha256=<hex>`), retried with backoff and jitter
//! on a network error or a non-2xx answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{info, warn};

use super::meetings::{JoinRequest, Meetings};
use crate::config::PolicyConfig;
use crate::metrics::Metrics;

/// Attempts per join request.
const ATTEMPTS: u32 = 6;

/// Why the scheduler cannot start.
#[derive(Debug, thiserror::Error)]
#[error("policy.webhook_secret_env: environment variable {0} is not set")]
pub struct MissingSecret(pub String);

/// The signature header value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // INVARIANT: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What the scheduler works with.
#[derive(Clone)]
struct Deliveries {
    meetings: Arc<Meetings>,
    metrics: Metrics,
    client: reqwest::Client,
    url: String,
    secret: Arc<Vec<u8>>,
}

/// Sends join requests until `shutdown` resolves.
pub async fn run(
    meetings: Arc<Meetings>,
    metrics: Metrics,
    policy: PolicyConfig,
    secret: Vec<u8>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::select! {
        () = schedule(meetings, metrics, policy, secret) => {}
        () = shutdown => info!("join request scheduler stopped"),
    }
}

async fn schedule(
    meetings: Arc<Meetings>,
    metrics: Metrics,
    policy: PolicyConfig,
    secret: Vec<u8>,
) {
    let lead = chrono::Duration::seconds(i64::try_from(policy.join_lead_seconds).unwrap_or(60));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the webhook client; no join requests");
            return;
        }
    };
    let Some(url) = policy.webhook_url.clone() else {
        return;
    };
    info!(webhook = %url, lead_seconds = policy.join_lead_seconds, "join request scheduler started");
    let deliveries = Deliveries {
        meetings: meetings.clone(),
        metrics,
        client,
        url,
        secret: Arc::new(secret),
    };
    loop {
        let now = chrono::Utc::now();
        for request in meetings.take_due_joins(now, lead, &policy.public_url) {
            tokio::spawn(deliveries.clone().deliver(request));
        }
        // New meetings may arrive at any time: look again at least each
        // quarter second.
        let wait = meetings
            .next_join_at(lead)
            .and_then(|t| (t - chrono::Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_millis(250))
            .min(Duration::from_millis(250));
        tokio::time::sleep(wait).await;
    }
}

impl Deliveries {
    async fn deliver(self, request: JoinRequest) {
        let Self {
            meetings,
            metrics,
            client,
            url,
            secret,
        } = self;
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let timestamp = chrono::Utc::now().timestamp();
            let outcome = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hearken-timestamp", timestamp.to_string())
                .header("x-hearken-signature", sign(&secret, timestamp, &body))
                .body(body.clone())
                .send()
                .await;
            let status = match &outcome {
                Ok(r) if r.status().is_success() => {
                    meetings.set_join_outcome(&request.call_id, true);
                    metrics
                        .join_requests
                        .with_label_values(&["delivered"])
                        .inc();
                    info!(call = %request.call_id, attempt, "join request delivered");
                    return;
                }
                Ok(r) => r.status().to_string(),
                Err(e) => e.to_string(),
            };
            metrics.join_requests.with_label_values(&["retried"]).inc();
            warn!(call = %request.call_id, attempt, %status, "join request not accepted; retrying");
            let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        meetings.set_join_outcome(&request.call_id, false);
        metrics.join_requests.with_label_values(&["failed"]).inc();
        warn!(call = %request.call_id, "join request failed after {ATTEMPTS} attempts");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Key "Jefe" (RFC 4231 test case 2) over "1.what do ya want for
        // nothing?", computed independently with
        // `printf '1.what do ya want for nothing?' | openssl dgst -sha256 -hmac Jefe`.
        assert_eq!(
            sign(b"Jefe", 1, b"what do ya want for nothing?"),
            "sha256=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
        assert_ne!(
            sign(b"Jefe", 2, b"what do ya want for nothing?"),
            sign(b"Jefe", 1, b"what do ya want for nothing?")
        );
    }
}

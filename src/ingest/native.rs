//! Which calls have a native ingest, and the tokens that let a QUIC
//! connection carry their flows.
//!
//! The HTTP API (`POST /v1/calls/{id}/native`) makes a [`NativeCall`]: the
//! worker that owns the call, the key its native session has there, the
//! flows, and a connection token. A QUIC connection that presents the token
//! (see [`super::quic`]) may send those flows; it looks them up here once,
//! then sends every packet straight to the worker's [`NativeInlet`]. This
//! table is touched on setup and changes only, never per packet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hearken_core::ids::CallId;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::media::session::SessionKey;
use crate::media::{NativeFlow, NativeInlet};

/// A call's native ingest.
#[derive(Clone)]
pub struct NativeCall {
    /// The call.
    pub call_id: CallId,
    /// The native session's secret (the registry's and the engine's key).
    pub secret: String,
    /// The worker that owns the call.
    pub worker: usize,
    /// The native session on that worker.
    pub session: SessionKey,
    /// Where its packets go.
    pub inlet: NativeInlet,
    /// Its flows, by flow id.
    pub flows: Vec<NativeFlow>,
}

/// A connection token, as kept: its SHA-256, so a lookup's timing says
/// nothing about the tokens held.
type TokenKey = [u8; 32];

fn token_key(token: &[u8]) -> TokenKey {
    Sha256::digest(token).into()
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<TokenKey, Arc<NativeCall>>,
    by_call: HashMap<CallId, TokenKey>,
}

/// Every native call of this node.
pub struct NativeCalls {
    inner: Mutex<Inner>,
    /// Bumped whenever a call's flows change or a call goes, so connections
    /// carrying it look again.
    changed: watch::Sender<u64>,
}

impl Default for NativeCalls {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl NativeCalls {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent under every operation below (each is
        // a few map updates that cannot panic midway).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether `call_id` has a native ingest.
    pub fn contains(&self, call_id: &CallId) -> bool {
        self.lock().by_call.contains_key(call_id)
    }

    /// Adds a call under `token`.
    pub fn insert(&self, token: &str, call: NativeCall) {
        let key = token_key(token.as_bytes());
        let mut inner = self.lock();
        inner.by_call.insert(call.call_id.clone(), key);
        inner.by_token.insert(key, Arc::new(call));
        drop(inner);
        self.bump();
    }

    /// The call a connection token names.
    pub fn by_token(&self, token: &[u8]) -> Option<Arc<NativeCall>> {
        self.lock().by_token.get(&token_key(token)).cloned()
    }

    /// The native ingest of `call_id`.
    pub fn by_call(&self, call_id: &CallId) -> Option<Arc<NativeCall>> {
        let inner = self.lock();
        let key = inner.by_call.get(call_id)?;
        inner.by_token.get(key).cloned()
    }

    /// Replaces the flows of `call_id`'s native ingest.
    pub fn set_flows(&self, call_id: &CallId, flows: Vec<NativeFlow>) {
        let mut inner = self.lock();
        let Some(key) = inner.by_call.get(call_id).copied() else {
            return;
        };
        if let Some(call) = inner.by_token.get_mut(&key) {
            let mut updated = NativeCall::clone(call);
            updated.flows = flows;
            *call = Arc::new(updated);
        }
        drop(inner);
        self.bump();
    }

    /// Forgets the native ingest whose session secret is `secret` (it
    /// ended); returns its call.
    pub fn remove_session(&self, secret: &str) -> Option<CallId> {
        let mut inner = self.lock();
        let key = inner
            .by_token
            .iter()
            .find(|(_, c)| c.secret == secret)
            .map(|(k, _)| *k)?;
        let call = inner.by_token.remove(&key)?;
        inner.by_call.remove(&call.call_id);
        drop(inner);
        self.bump();
        Some(call.call_id.clone())
    }

    /// Tells when anything changed (connections re-read their calls).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Native calls now.
    pub fn len(&self) -> usize {
        self.lock().by_call.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

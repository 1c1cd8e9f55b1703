//! Where each call and session lives, and what waits for a call that has
//! not reached a worker yet. Control plane only: the packet path never
//! touches it, so a plain mutex (held for a map operation) is enough.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use hearken_core::conference::SessionFailure;
use hearken_core::consent::engine::ParticipantDetails;
use hearken_core::ids::CallId;

/// Calls not started yet for which participant details may wait.
pub const MAX_PENDING_CALLS: usize = 10_000;
/// Participants of one such call.
pub const MAX_PENDING_PARTICIPANTS: usize = 1_000;
/// Calls that never started whose failed sessions are remembered (for
/// `GET /v1/calls/{id}`), oldest forgotten first.
const MAX_FAILED_CALLS: usize = 1_000;
/// Failed sessions remembered per such call.
const MAX_FAILURES_PER_CALL: usize = 16;

/// A registered session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// Its call.
    pub call_id: CallId,
    /// The worker that carries it.
    pub worker: usize,
    /// Strong entity tag of its ICE session (WHIP `ETag`).
    pub etag: String,
}

/// A registered call.
#[derive(Debug, Clone)]
pub struct CallEntry {
    /// The worker that carries it (every session of a call is on it).
    pub worker: usize,
    /// Sessions registered.
    pub sessions: usize,
}

/// Why participant details were not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PendingError {
    /// Details already wait for [`MAX_PENDING_CALLS`] calls.
    #[error("details are held for {MAX_PENDING_CALLS} calls that have not started")]
    TooManyCalls,
    /// Details already wait for [`MAX_PENDING_PARTICIPANTS`] participants
    /// of this call.
    #[error("at most {MAX_PENDING_PARTICIPANTS} participants per call before it starts")]
    TooManyParticipants,
}

/// Where participant details go.
#[derive(Debug)]
pub enum DetailsRoute {
    /// The call is on this worker: send them there.
    Worker(usize),
    /// Kept until the call's first session is placed.
    Pending,
}

/// The registry (see the module docs).
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, SessionEntry>,
    calls: HashMap<CallId, CallEntry>,
    pending: HashMap<CallId, Vec<(String, ParticipantDetails)>>,
    failed: HashMap<CallId, Vec<SessionFailure>>,
    failed_order: VecDeque<CallId>,
}

/// A session placed by [`Registry::place_session`].
#[derive(Debug)]
pub struct Placement {
    /// The worker to create the session on.
    pub worker: usize,
    /// Details that waited for the call (its first session takes them).
    pub early_details: Vec<(String, ParticipantDetails)>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock still holds consistent data: every update is a
        // few map operations that cannot panic half way.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions registered.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Calls registered.
    pub fn call_ids(&self) -> Vec<CallId> {
        self.lock().calls.keys().cloned().collect()
    }

    /// The worker of a call, if it is on one.
    pub fn call_worker(&self, call_id: &CallId) -> Option<usize> {
        self.lock().calls.get(call_id).map(|c| c.worker)
    }

    /// A session by its secret, if it belongs to `call_id`.
    pub fn session(&self, call_id: &CallId, secret: &str) -> Option<SessionEntry> {
        self.lock()
            .sessions
            .get(secret)
            .filter(|e| &e.call_id == call_id)
            .cloned()
    }

    /// Registers a new session of `call_id`: on the call's worker if it has
    /// one, else on `choose_worker()`'s. Fails (`None`) when `max_sessions`
    /// sessions are registered already or no worker can be chosen.
    pub fn place_session(
        &self,
        call_id: &CallId,
        secret: &str,
        etag: &str,
        max_sessions: usize,
        choose_worker: impl FnOnce() -> Option<usize>,
    ) -> Option<Placement> {
        let mut inner = self.lock();
        if inner.sessions.len() >= max_sessions {
            return None;
        }
        let (worker, early_details) = match inner.calls.get_mut(call_id) {
            Some(call) => {
                call.sessions += 1;
                (call.worker, Vec::new())
            }
            None => {
                let worker = choose_worker()?;
                inner.calls.insert(
                    call_id.clone(),
                    CallEntry {
                        worker,
                        sessions: 1,
                    },
                );
                (worker, inner.pending.remove(call_id).unwrap_or_default())
            }
        };
        inner.sessions.insert(
            secret.to_owned(),
            SessionEntry {
                call_id: call_id.clone(),
                worker,
                etag: etag.to_owned(),
            },
        );
        Some(Placement {
            worker,
            early_details,
        })
    }

    /// Forgets a session; forgets its call when it was the last one.
    pub fn remove_session(&self, secret: &str) {
        let mut inner = self.lock();
        let Some(entry) = inner.sessions.remove(secret) else {
            return;
        };
        if let Some(call) = inner.calls.get_mut(&entry.call_id) {
            call.sessions = call.sessions.saturating_sub(1);
            if call.sessions == 0 {
                inner.calls.remove(&entry.call_id);
            }
        }
    }

    /// Details of a participant: sent to the call's worker when it is on
    /// one, else kept for the call's first session (bounded).
    pub fn route_details(
        &self,
        call_id: &CallId,
        participant_id: &str,
        details: &ParticipantDetails,
    ) -> Result<DetailsRoute, PendingError> {
        let mut inner = self.lock();
        if let Some(call) = inner.calls.get(call_id) {
            return Ok(DetailsRoute::Worker(call.worker));
        }
        if !inner.pending.contains_key(call_id) && inner.pending.len() >= MAX_PENDING_CALLS {
            return Err(PendingError::TooManyCalls);
        }
        let list = inner.pending.entry(call_id.clone()).or_default();
        list.retain(|(id, _)| id != participant_id);
        if list.len() >= MAX_PENDING_PARTICIPANTS {
            return Err(PendingError::TooManyParticipants);
        }
        list.push((participant_id.to_owned(), details.clone()));
        Ok(DetailsRoute::Pending)
    }

    /// Remembers a failed session of a call (shown while the call has no
    /// summary of its own, e.g. when no session ever connected).
    pub fn session_failed(&self, call_id: &CallId, failure: SessionFailure) {
        let mut inner = self.lock();
        if !inner.failed.contains_key(call_id) {
            if inner.failed_order.len() >= MAX_FAILED_CALLS
                && let Some(oldest) = inner.failed_order.pop_front()
            {
                inner.failed.remove(&oldest);
            }
            inner.failed_order.push_back(call_id.clone());
        }
        let list = inner.failed.entry(call_id.clone()).or_default();
        if list.len() >= MAX_FAILURES_PER_CALL {
            list.remove(0);
        }
        list.push(failure);
    }

    /// The failed sessions remembered for a call.
    pub fn failed_sessions(&self, call_id: &CallId) -> Vec<SessionFailure> {
        self.lock().failed.get(call_id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearken_core::conference::FailureCause;

    fn id(s: &str) -> CallId {
        CallId::parse(s).unwrap()
    }

    #[test]
    fn sessions_of_a_call_share_its_worker_and_the_first_takes_pending_details() {
        let r = Registry::default();
        let details = ParticipantDetails::default();
        assert!(matches!(
            r.route_details(&id("c"), "alice", &details),
            Ok(DetailsRoute::Pending)
        ));
        let first = r
            .place_session(&id("c"), "s1", "e1", 10, || Some(1))
            .unwrap();
        assert_eq!(first.worker, 1);
        assert_eq!(first.early_details.len(), 1);
        // The call is placed: a second session goes to its worker, whatever
        // placement would say, and takes no details.
        let second = r
            .place_session(&id("c"), "s2", "e2", 10, || Some(0))
            .unwrap();
        assert_eq!((second.worker, second.early_details.len()), (1, 0));
        assert!(matches!(
            r.route_details(&id("c"), "bob", &details),
            Ok(DetailsRoute::Worker(1))
        ));
        r.remove_session("s1");
        assert_eq!(r.call_worker(&id("c")), Some(1));
        r.remove_session("s2");
        assert_eq!(r.call_worker(&id("c")), None);
    }

    #[test]
    fn capacity_and_dead_workers_refuse_placement() {
        let r = Registry::default();
        assert!(
            r.place_session(&id("a"), "s1", "e", 1, || Some(0))
                .is_some()
        );
        assert!(
            r.place_session(&id("b"), "s2", "e", 1, || Some(0))
                .is_none()
        );
        assert!(r.place_session(&id("b"), "s2", "e", 5, || None).is_none());
    }

    #[test]
    fn failures_are_bounded() {
        let r = Registry::default();
        for n in 0..MAX_FAILURES_PER_CALL + 3 {
            r.session_failed(
                &id("c"),
                SessionFailure {
                    session: format!("s{n}"),
                    cause: FailureCause::DtlsTimeout,
                    detail: String::new(),
                },
            );
        }
        let kept = r.failed_sessions(&id("c"));
        assert_eq!(kept.len(), MAX_FAILURES_PER_CALL);
        assert_eq!(kept[0].session, "s3", "the oldest go first");
    }
}

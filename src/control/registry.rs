//! Where each call and session lives, and what the provider said about a
//! call's participants. Control plane only: the packet path never touches
//! it, so a plain mutex (held for a map operation) is enough.
//!
//! What the provider says about participants (details, presence, its own
//! notice, consent decisions) is kept per call id until the call ends, not
//! only until its first session arrives: a first session that fails before
//! the call starts, or a client that reconnects, gets a new conference, and
//! that conference is given everything again, in the order it was said.
//! Bounded (calls, participants per call, one input of each kind per
//! participant) and forgotten after [`KEPT_FOR`] without news.

use std::collections::{HashMap, VecDeque};
use std::mem::discriminant;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hearken_core::conference::SessionFailure;
use hearken_core::ids::CallId;

use crate::media::{CallInput, Resume};

/// Calls for which the provider's inputs are kept.
pub const MAX_PENDING_CALLS: usize = 10_000;
/// Participants of one such call.
pub const MAX_PENDING_PARTICIPANTS: usize = 1_000;
/// How long the inputs of a call are kept after the last one arrived, when
/// the call does not end first (a call that never starts).
pub const KEPT_FOR: Duration = Duration::from_secs(6 * 3600);
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

/// Why an input was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PendingError {
    /// Inputs are already kept for [`MAX_PENDING_CALLS`] calls.
    #[error("participant inputs are kept for {MAX_PENDING_CALLS} calls already")]
    TooManyCalls,
    /// Inputs are already kept for [`MAX_PENDING_PARTICIPANTS`]
    /// participants of this call.
    #[error("at most {MAX_PENDING_PARTICIPANTS} participants per call")]
    TooManyParticipants,
}

/// Where an input goes (it is kept either way).
#[derive(Debug)]
pub enum InputRoute {
    /// The call is on this worker: send it there too.
    Worker(usize),
    /// The call has no session yet: its first session takes it.
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
    kept: HashMap<CallId, Kept>,
    failed: HashMap<CallId, Vec<SessionFailure>>,
    failed_order: VecDeque<CallId>,
    /// Calls that go on here after their node was lost, until their first
    /// session is placed.
    resumes: HashMap<CallId, Arc<Resume>>,
}

/// The inputs kept for one call.
#[derive(Debug)]
struct Kept {
    inputs: Vec<CallInput>,
    participants: usize,
    touched: Instant,
}

/// A session placed by [`Registry::place_session`].
#[derive(Debug)]
pub struct Placement {
    /// The worker to create the session on.
    pub worker: usize,
    /// What the provider said about the call's participants so far, when
    /// this session starts the call on its worker (empty otherwise).
    pub early_inputs: Vec<CallInput>,
    /// Set when this session starts, on its worker, a call that goes on
    /// here after the node that began it was lost.
    pub resume: Option<Arc<Resume>>,
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

    /// How many calls are registered.
    pub fn call_count(&self) -> usize {
        self.lock().calls.len()
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
        let (worker, early_inputs, resume) = match inner.calls.get_mut(call_id) {
            Some(call) => {
                call.sessions += 1;
                (call.worker, Vec::new(), None)
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
                let kept = inner.kept.get(call_id).map(|k| k.inputs.clone());
                let resume = inner.resumes.remove(call_id);
                (worker, kept.unwrap_or_default(), resume)
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
            early_inputs,
            resume,
        })
    }

    /// Notes that `call_id` goes on here after the node that began it was
    /// lost: its first session placed here takes `resume` along. Kept for
    /// at most [`MAX_PENDING_CALLS`] calls.
    pub fn set_resume(&self, call_id: &CallId, resume: Arc<Resume>) {
        let mut inner = self.lock();
        if inner.resumes.len() < MAX_PENDING_CALLS || inner.resumes.contains_key(call_id) {
            inner.resumes.insert(call_id.clone(), resume);
        }
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

    /// Keeps what the provider said about a participant (replacing what it
    /// said before of the same kind) and says where else it goes.
    pub fn record_input(
        &self,
        call_id: &CallId,
        input: &CallInput,
        now: Instant,
    ) -> Result<InputRoute, PendingError> {
        let mut inner = self.lock();
        let live = inner.calls.get(call_id).map(|c| c.worker);
        if !inner.kept.contains_key(call_id) && inner.kept.len() >= MAX_PENDING_CALLS {
            inner
                .kept
                .retain(|_, k| now.saturating_duration_since(k.touched) < KEPT_FOR);
            if inner.kept.len() >= MAX_PENDING_CALLS {
                // A live call still gets it; only its replay is lost.
                return live
                    .map(InputRoute::Worker)
                    .ok_or(PendingError::TooManyCalls);
            }
        }
        let kept = inner.kept.entry(call_id.clone()).or_insert_with(|| Kept {
            inputs: Vec::new(),
            participants: 0,
            touched: now,
        });
        let known = kept
            .inputs
            .iter()
            .any(|i| i.participant_id == input.participant_id);
        if !known && kept.participants >= MAX_PENDING_PARTICIPANTS {
            return live
                .map(InputRoute::Worker)
                .ok_or(PendingError::TooManyParticipants);
        }
        // The latest of each kind is what counts; it moves to the end so
        // the replay keeps the order things were last said in.
        kept.inputs.retain(|i| {
            i.participant_id != input.participant_id
                || discriminant(&i.kind) != discriminant(&input.kind)
        });
        kept.inputs.push(input.clone());
        kept.participants += usize::from(!known);
        kept.touched = now;
        Ok(live.map_or(InputRoute::Pending, InputRoute::Worker))
    }

    /// The call ended: what was said about its participants is forgotten
    /// (a later call with the same id starts afresh).
    pub fn call_ended(&self, call_id: &CallId) {
        let mut inner = self.lock();
        inner.kept.remove(call_id);
        // A second session that raced the first to resume the call left
        // its copy behind.
        inner.resumes.remove(call_id);
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
    use hearken_core::consent::engine::ParticipantDetails;

    use crate::media::InputKind;

    fn id(s: &str) -> CallId {
        CallId::parse(s).unwrap()
    }

    fn details(who: &str) -> CallInput {
        CallInput {
            participant_id: who.into(),
            kind: InputKind::Details(ParticipantDetails::default()),
        }
    }

    #[test]
    fn sessions_of_a_call_share_its_worker_and_the_first_takes_kept_inputs() {
        let r = Registry::default();
        let now = Instant::now();
        assert!(matches!(
            r.record_input(&id("c"), &details("alice"), now),
            Ok(InputRoute::Pending)
        ));
        let first = r
            .place_session(&id("c"), "s1", "e1", 10, || Some(1))
            .unwrap();
        assert_eq!(first.worker, 1);
        assert_eq!(first.early_inputs, vec![details("alice")]);
        // The call is placed: a second session goes to its worker, whatever
        // placement would say, and its conference exists already.
        let second = r
            .place_session(&id("c"), "s2", "e2", 10, || Some(0))
            .unwrap();
        assert_eq!((second.worker, second.early_inputs.len()), (1, 0));
        assert!(matches!(
            r.record_input(&id("c"), &details("bob"), now),
            Ok(InputRoute::Worker(1))
        ));
        r.remove_session("s1");
        assert_eq!(r.call_worker(&id("c")), Some(1));
        r.remove_session("s2");
        assert_eq!(r.call_worker(&id("c")), None);
    }

    #[test]
    fn inputs_survive_a_first_session_that_fails_and_go_when_the_call_ends() {
        let r = Registry::default();
        let now = Instant::now();
        let granted = CallInput {
            participant_id: "alice".into(),
            kind: InputKind::Presence(true),
        };
        r.record_input(&id("c"), &details("alice"), now).unwrap();
        r.record_input(&id("c"), &granted, now).unwrap();
        // The same kind again replaces the first and moves to the end.
        r.record_input(&id("c"), &details("alice"), now).unwrap();
        r.place_session(&id("c"), "s1", "e1", 10, || Some(0))
            .unwrap();
        r.remove_session("s1");
        let again = r
            .place_session(&id("c"), "s2", "e2", 10, || Some(0))
            .unwrap();
        assert_eq!(again.early_inputs, vec![granted, details("alice")]);
        r.call_ended(&id("c"));
        r.remove_session("s2");
        let fresh = r
            .place_session(&id("c"), "s3", "e3", 10, || Some(0))
            .unwrap();
        assert!(fresh.early_inputs.is_empty());
    }

    #[test]
    fn kept_inputs_are_bounded_per_call() {
        let r = Registry::default();
        let now = Instant::now();
        for n in 0..MAX_PENDING_PARTICIPANTS {
            r.record_input(&id("c"), &details(&format!("p{n}")), now)
                .unwrap();
        }
        assert_eq!(
            r.record_input(&id("c"), &details("one-more"), now)
                .unwrap_err(),
            PendingError::TooManyParticipants
        );
        // A participant already kept may still be updated.
        assert!(r.record_input(&id("c"), &details("p0"), now).is_ok());
        // Once the call is live, a new participant still reaches it (only
        // the replay of their input is lost).
        r.place_session(&id("c"), "s1", "e1", 10, || Some(0))
            .unwrap();
        assert!(matches!(
            r.record_input(&id("c"), &details("one-more"), now),
            Ok(InputRoute::Worker(0))
        ));
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

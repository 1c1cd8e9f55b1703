//! The user agent server: one task per server transaction the stack hands
//! over, and the table of dialogs in progress.
//!
//! An INVITE's transaction is owned by a small pump task ([`pump`]) that
//! keeps `Transaction::receive` running (it retransmits, absorbs
//! retransmissions and reports the CANCEL and the ACK); the INVITE's own
//! task decides, and sends its responses to the pump as
//! `TransactionEvent::Respond`, so a CANCEL that arrives while a media
//! worker is being asked is answered at once (200 to the CANCEL, 487 to the
//! INVITE) and the session the answer would have carried is ended.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearken_core::ids::CallId;
use prometheus::IntCounter;
use rsipstack::sip::{Header, HeadersExt, Method, Request, Response, SipMessage, StatusCode};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::{Transaction, TransactionEvent, TransactionEventSender};
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::auth::{AuthError, DigestAuth, Network};
use super::message::{self, ALLOW, Target};
use super::sdp::{self, Origin, SdpError};
use crate::media::{Command, CreateSessionError, CreateSip, Reply, SipMedia};
use crate::metrics::{IngestError, Labelled};
use crate::server::AppState;

/// How long a media worker may take to start or change a dialog's media.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 3261 timers (Appendix A).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long a 2xx waits for its ACK (64·T1, §13.3.1.4).
const ACK_WAIT: Duration = Duration::from_secs(32);
/// Server transactions handled at once; more are answered 503.
const MAX_IN_FLIGHT: usize = 4096;

/// What the server state keeps of the SIP ingest: its address (tests bind
/// port 0 and need it back) and the dialogs in progress.
#[derive(Clone)]
pub struct SipInfo {
    /// The address UDP and TCP are bound to.
    pub local_addr: SocketAddr,
    /// `host:port` put in Contact headers.
    pub contact_host: String,
    dialogs: Arc<Dialogs>,
}

impl std::fmt::Debug for SipInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipInfo")
            .field("local_addr", &self.local_addr)
            .field("dialogs", &self.dialog_count())
            .finish()
    }
}

impl SipInfo {
    pub(super) fn new(local_addr: SocketAddr, contact_host: String) -> Self {
        Self {
            local_addr,
            contact_host,
            dialogs: Arc::new(Dialogs::default()),
        }
    }

    /// Dialogs established (or being answered) now.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.lock().len()
    }

    /// The engine ended the media of the session with `secret`: forget its
    /// dialog and tell the caller with a BYE. Returns whether it was one.
    pub fn session_ended(&self, secret: &str) -> bool {
        let Some(dialog) = self.dialogs.remove_by_secret(secret) else {
            return false;
        };
        if let Some(bye) = dialog.bye.clone() {
            tokio::spawn(bye.send());
        }
        true
    }
}

/// A dialog's identity (RFC 3261 §12): Call-ID and Hearken's tag; the
/// caller's tag is checked on lookup.
type DialogKey = (String, String);

/// One dialog in progress.
#[derive(Clone)]
struct Dialog {
    call_id: CallId,
    secret: String,
    public_id: String,
    remote_tag: String,
    origin: Origin,
    local_rtp: SocketAddr,
    media: Option<SipMedia>,
    /// A re-INVITE is being answered (another one gets 491).
    updating: bool,
    /// How to end the dialog from Hearken's side.
    bye: Option<Bye>,
}

#[derive(Default)]
struct Dialogs {
    map: Mutex<HashMap<DialogKey, Dialog>>,
}

impl Dialogs {
    fn lock(&self) -> MutexGuard<'_, HashMap<DialogKey, Dialog>> {
        // Every update is a map operation that cannot panic half way.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove_by_secret(&self, secret: &str) -> Option<Dialog> {
        let mut map = self.lock();
        let key = map
            .iter()
            .find(|(_, d)| d.secret == secret)
            .map(|(k, _)| k.clone())?;
        map.remove(&key)
    }
}

/// A BYE Hearken can send to end a dialog itself.
#[derive(Clone)]
struct Bye {
    endpoint: EndpointInnerRef,
    conn: SipConnection,
    peer: SipAddr,
    request: Request,
}

impl Bye {
    /// Sends the BYE in a client transaction (retransmitted over UDP) and
    /// waits for its final response or timeout.
    async fn send(self) {
        let Ok(key) = TransactionKey::from_request(&self.request, TransactionRole::Client) else {
            return;
        };
        let mut tx = Transaction::new_client(key, self.request, self.endpoint, Some(self.conn));
        tx.destination = Some(self.peer);
        if tx.send().await.is_err() {
            return;
        }
        while let Some(msg) = tx.receive().await {
            if let SipMessage::Response(r) = msg
                && r.status_code.code() >= 200
            {
                break;
            }
        }
    }
}

/// What an INVITE's pump reports.
enum PumpEvent {
    /// The INVITE was cancelled before its final response (487 sent).
    Cancelled,
    /// The ACK of a 2xx.
    Ack(Box<Request>),
    /// The transaction ended.
    Ended,
}

/// Why an INVITE is refused, as a SIP status and the text of its Warning.
struct Refusal {
    status: u16,
    warning: Option<String>,
    extra: Vec<Header>,
}

impl Refusal {
    fn new(status: u16, warning: impl Into<String>) -> Self {
        Self {
            status,
            warning: Some(warning.into()),
            extra: Vec::new(),
        }
    }

    fn with(mut self, header: Header) -> Self {
        self.extra.push(header);
        self
    }
}

/// The user agent server.
pub(super) struct Uas {
    state: Arc<AppState>,
    endpoint: EndpointInnerRef,
    info: SipInfo,
    auth: DigestAuth,
    allow_from: Vec<Network>,
    errors: Labelled<IngestError, IntCounter>,
    in_flight: std::sync::atomic::AtomicUsize,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_token(len: usize) -> String {
    crate::http::whip::random_hex(len)
}

/// A header's value by name (case-insensitive; also custom headers).
fn header_value<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(Header::value)
}

fn content_type(req: &Request) -> Option<String> {
    req.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_ascii_lowercase()),
        _ => None,
    })
}

fn is_sdp(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim() == "application/sdp")
}

/// The request's source address: the top Via's host with `received` and
/// `rport` applied (the reader set them from the socket, stripping any the
/// sender wrote, so a forged Via cannot claim another source).
fn source_of(req: &Request) -> Option<SipAddr> {
    let via = req.via_header().ok()?;
    let (transport, addr) = SipConnection::parse_target_from_via(via).ok()?;
    Some(SipAddr {
        r#type: Some(transport),
        addr,
    })
}

fn source_ip(addr: &SipAddr) -> Option<IpAddr> {
    addr.get_socketaddr().ok().map(|a| a.ip())
}

impl Uas {
    pub(super) fn new(
        state: Arc<AppState>,
        endpoint: EndpointInnerRef,
        info: SipInfo,
        auth: DigestAuth,
        allow_from: Vec<Network>,
        errors: Labelled<IngestError, IntCounter>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state,
            endpoint,
            info,
            auth,
            allow_from,
            errors,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn count(&self, error: IngestError) {
        self.errors.get(error).inc();
    }

    /// Takes every new server transaction until `cancel`.
    pub(super) async fn run(
        self: Arc<Self>,
        mut incoming: TransactionReceiver,
        cancel: rsipstack::platform::CancellationToken,
    ) {
        loop {
            let tx = tokio::select! {
                _ = cancel.cancelled() => return,
                tx = incoming.recv() => match tx {
                    Some(tx) => tx,
                    None => return,
                },
            };
            let uas = self.clone();
            tokio::spawn(async move {
                use std::sync::atomic::Ordering;
                let busy = uas.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT;
                if busy {
                    let mut tx = tx;
                    let resp = uas.response(&tx.original, 503, None, None, vec![]);
                    let _ = tx.respond(resp).await;
                } else {
                    uas.clone().handle(tx).await;
                }
                uas.in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// Builds a response to `req`: the headers RFC 3261 §8.2.6 copies, To
    /// with `to_tag` (final responses), a Warning, then `extra`.
    fn response(
        &self,
        req: &Request,
        status: u16,
        to_tag: Option<&str>,
        warning: Option<&str>,
        extra: Vec<Header>,
    ) -> Response {
        self.response_with_body(req, status, to_tag, warning, extra, None)
    }

    fn response_with_body(
        &self,
        req: &Request,
        status: u16,
        to_tag: Option<&str>,
        warning: Option<&str>,
        extra: Vec<Header>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Response {
        let (content_type, body) = match body {
            Some((t, b)) => (Some(t), Some(b)),
            None => (None, None),
        };
        let mut resp = self
            .endpoint
            .make_response(req, StatusCode::from(status), body);
        if let Some(tag) = to_tag {
            for h in resp.headers.iter_mut() {
                if let Header::To(to) = h
                    && to.tag().ok().flatten().is_none()
                {
                    *to = to.with_tag(tag.to_owned().into());
                }
            }
        }
        if let Some(w) = warning {
            resp.headers.push(Header::Warning(
                format!("399 hearken \"{}\"", message::quoted_text(w)).into(),
            ));
        }
        if let Some(t) = content_type {
            resp.headers.push(Header::ContentType(t.to_owned().into()));
        }
        resp.headers.extend(extra);
        resp
    }

    async fn reply(
        &self,
        tx: &mut Transaction,
        status: u16,
        warning: Option<&str>,
        extra: Vec<Header>,
    ) {
        let tag = random_token(8);
        let resp = self.response(&tx.original, status, Some(&tag), warning, extra);
        if let Err(e) = tx.respond(resp).await {
            debug!(error = %e, status, "SIP: response not sent");
        }
    }

    async fn handle(self: Arc<Self>, mut tx: Transaction) {
        let method = tx.original.method;
        let in_dialog = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        match method {
            Method::Invite if in_dialog => self.reinvite(tx).await,
            Method::Invite => self.invite(tx).await,
            Method::Options => {
                let extra = vec![
                    Header::Allow(ALLOW.into()),
                    Header::Accept("application/sdp".into()),
                ];
                self.reply(&mut tx, 200, None, extra).await;
            }
            Method::Bye => self.bye(tx).await,
            Method::Info => self.info(tx).await,
            // The transaction layer keeps these two: an ACK is matched to its
            // INVITE and a CANCEL answered there.
            Method::Ack | Method::Cancel => {}
            _ => {
                self.count(IngestError::UnsupportedMethod);
                self.reply(&mut tx, 405, None, vec![Header::Allow(ALLOW.into())])
                    .await;
            }
        }
    }

    /// The dialog an in-dialog request belongs to, if Hearken has it.
    fn dialog_of(&self, req: &Request) -> Option<(DialogKey, Dialog)> {
        let call_id = req.call_id_header().ok()?.value().to_owned();
        let local = req.to_header().ok()?.tag().ok()??.value().to_owned();
        let remote = req.from_header().ok()?.tag().ok()??.value().to_owned();
        let key = (call_id, local);
        let dialogs = self.info.dialogs.lock();
        let dialog = dialogs.get(&key).filter(|d| d.remote_tag == remote)?;
        Some((key, dialog.clone()))
    }

    async fn unknown_dialog(&self, tx: &mut Transaction) {
        self.count(IngestError::UnknownDialog);
        self.reply(tx, 481, None, vec![]).await;
    }

    async fn bye(&self, mut tx: Transaction) {
        let Some((key, dialog)) = self.dialog_of(&tx.original) else {
            return self.unknown_dialog(&mut tx).await;
        };
        self.info.dialogs.lock().remove(&key);
        self.reply(&mut tx, 200, None, vec![]).await;
        info!(call = %dialog.call_id, sip = %dialog.public_id, "SIP dialog ended by BYE");
        self.end_session(&dialog.call_id, &dialog.secret).await;
    }

    /// Ends a dialog's media session and forgets it in the registry.
    async fn end_session(&self, call_id: &CallId, secret: &str) {
        let command = Command::DeleteSession {
            call_id: call_id.clone(),
            secret: secret.to_owned(),
            done: None,
        };
        if let Err(e) = self.ask_call(call_id, command).await {
            warn!(call = %call_id, error = %e, "SIP: could not end a dialog's session");
        }
        self.state.registry.remove_session(secret);
    }

    async fn ask_call(
        &self,
        call_id: &CallId,
        command: Command,
    ) -> Result<Option<Reply>, crate::media::AskError> {
        let Some(worker) = self.state.registry.call_worker(call_id) else {
            return Ok(None);
        };
        let Some(handle) = self.state.workers.get(worker) else {
            return Ok(None);
        };
        handle.ask(command, ANSWER_TIMEOUT).await.map(Some)
    }

    async fn info(&self, mut tx: Transaction) {
        let Some((_, dialog)) = self.dialog_of(&tx.original) else {
            return self.unknown_dialog(&mut tx).await;
        };
        let body = String::from_utf8_lossy(&tx.original.body).into_owned();
        if body.trim().is_empty() {
            // An INFO without a body is a keepalive.
            return self.reply(&mut tx, 200, None, vec![]).await;
        }
        let content_type = content_type(&tx.original).unwrap_or_default();
        match message::info_digit(&content_type, &body) {
            Ok(key) => {
                self.reply(&mut tx, 200, None, vec![]).await;
                let command = Command::SipDigit {
                    call_id: dialog.call_id.clone(),
                    secret: dialog.secret.clone(),
                    key,
                };
                if let Err(e) = self.ask_call(&dialog.call_id, command).await {
                    warn!(call = %dialog.call_id, error = %e, "SIP: a key could not be passed on");
                }
            }
            Err(message::DigitError::ContentType(t)) => {
                self.count(IngestError::UnsupportedMediaType);
                let accept = Header::Accept("application/dtmf-relay, application/dtmf".into());
                self.reply(
                    &mut tx,
                    415,
                    Some(&format!("INFO body {t} is not DTMF")),
                    vec![accept],
                )
                .await;
            }
            Err(e) => {
                self.count(IngestError::MalformedMessage);
                self.reply(&mut tx, 400, Some(&e.to_string()), vec![]).await;
            }
        }
    }

    /// Who may start a dialog (§ "Who may call" in the module docs).
    fn authenticate(&self, req: &Request) -> Result<(), Refusal> {
        let source = source_of(req).as_ref().and_then(source_ip);
        if source.is_some_and(|ip| self.allow_from.iter().any(|n| n.contains(ip))) {
            return Ok(());
        }
        if !self.auth.has_users() {
            self.count(IngestError::AuthFailed);
            return Err(Refusal::new(403, "this source is not allowed to call"));
        }
        let challenge = |stale| Refusal {
            status: 401,
            warning: None,
            extra: vec![Header::WwwAuthenticate(
                self.auth.challenge(now_secs(), stale).into(),
            )],
        };
        let Some(header) = req.headers.iter().find_map(|h| match h {
            Header::Authorization(a) => Some(a.value().to_owned()),
            _ => None,
        }) else {
            return Err(challenge(false));
        };
        let uri = req.uri.to_string();
        match self
            .auth
            .verify(&header, &req.method.to_string(), &uri, now_secs())
        {
            Ok(user) => {
                debug!(user, "SIP: caller authenticated");
                Ok(())
            }
            Err(AuthError::Stale) => Err(challenge(true)),
            Err(e) => {
                self.count(IngestError::AuthFailed);
                debug!(error = %e, ?source, "SIP: authentication failed");
                Err(Refusal::new(403, "authentication failed"))
            }
        }
    }

    /// Checks everything an INVITE needs before any media is asked for.
    fn check_invite(
        &self,
        req: &Request,
    ) -> Result<(Target, Option<(sdp::SessionDescription, sdp::Negotiated)>), Refusal> {
        if let Some(required) = header_value(req, "Require") {
            // 100rel (PRACK) and the rest are not implemented (§8.2.2.3).
            return Err(Refusal::new(420, "no extension is supported")
                .with(Header::Unsupported(required.to_owned().into())));
        }
        let content_type = content_type(req);
        if !req.body.is_empty() && !is_sdp(content_type.as_deref()) {
            self.count(IngestError::UnsupportedMediaType);
            return Err(Refusal::new(415, "the INVITE body must be application/sdp")
                .with(Header::Accept("application/sdp".into())));
        }
        self.authenticate(req)?;
        let from = req
            .from_header()
            .map(|f| f.value().to_owned())
            .unwrap_or_default();
        let target = message::target(
            &req.uri.to_string(),
            header_value(req, message::CALL_ID_HEADER),
            header_value(req, message::PARTICIPANT_HEADER),
            &from,
        )
        .map_err(|e| {
            self.count(IngestError::BadTarget);
            Refusal::new(e.status(), e.to_string())
        })?;
        let negotiated = if req.body.is_empty() {
            None
        } else {
            let text = String::from_utf8_lossy(&req.body);
            let offer = sdp::parse(&text).map_err(|e| self.sdp_refusal(&e))?;
            let chosen = sdp::negotiate(&offer).map_err(|e| self.sdp_refusal(&e))?;
            Some((offer, chosen))
        };
        Ok((target, negotiated))
    }

    fn sdp_refusal(&self, e: &SdpError) -> Refusal {
        if e.is_not_acceptable() {
            self.count(IngestError::NoCommonCodec);
            Refusal::new(488, e.to_string())
        } else {
            self.count(IngestError::MalformedMessage);
            Refusal::new(400, e.to_string())
        }
    }

    fn refuse(&self, sender: &TransactionEventSender, req: &Request, tag: &str, r: Refusal) {
        let resp = self.response(req, r.status, Some(tag), r.warning.as_deref(), r.extra);
        let _ = sender.send(TransactionEvent::Respond(resp));
    }

    /// A new dialog (§ the module docs): 100, checks, placement, media,
    /// 200 with the answer (or Hearken's offer), ACK.
    async fn invite(self: Arc<Self>, tx: Transaction) {
        let started = Instant::now();
        let req = tx.original.clone();
        let sender = tx.tu_sender.clone();
        let reliable = tx
            .connection
            .as_ref()
            .is_some_and(SipConnection::is_reliable);
        let conn = tx.connection.clone();
        let tag = random_token(8);
        let mut events = spawn_pump(tx, self.clone(), tag.clone());
        // §17.2.1: 100 Trying at once, the media worker may take a while.
        let trying = self.response(&req, 100, None, None, vec![]);
        let _ = sender.send(TransactionEvent::Respond(trying));

        let (target, negotiated) = match self.check_invite(&req) {
            Ok(v) => v,
            Err(r) => return self.refuse(&sender, &req, &tag, r),
        };
        let state = &self.state;
        let retry = Header::RetryAfter(state.config.limits.retry_after_secs.to_string().into());
        match crate::http::route_new_session(state, &target.call_id, "sip").await {
            Ok(crate::http::Route::Here) => {}
            Ok(crate::http::Route::Owner {
                sip: Some(owner), ..
            }) => {
                // §8.1.3.4: the caller sends the same INVITE to the Contact.
                let contact = redirect_uri(&req.uri.to_string(), &owner);
                info!(call = %target.call_id, owner = %owner, "SIP INVITE redirected to the call's owner");
                return self.refuse(
                    &sender,
                    &req,
                    &tag,
                    Refusal::new(302, "the call is carried by another node")
                        .with(Header::Contact(format!("<{contact}>").into())),
                );
            }
            Ok(crate::http::Route::Owner { sip: None, url }) => {
                return self.refuse(
                    &sender,
                    &req,
                    &tag,
                    Refusal::new(
                        503,
                        format!("the call is carried by {url}, which does not take SIP"),
                    )
                    .with(retry),
                );
            }
            Err(problem) => {
                return self.refuse(
                    &sender,
                    &req,
                    &tag,
                    Refusal::new(503, problem.detail().to_owned()).with(retry),
                );
            }
        }
        if let crate::control::meetings::Admission::Refuse(reason) =
            state.meetings.admit(&target.call_id)
        {
            return self.refuse(&sender, &req, &tag, Refusal::new(403, reason));
        }
        if state.store.call_has_ended(&target.call_id) {
            return self.refuse(
                &sender,
                &req,
                &tag,
                Refusal::new(
                    410,
                    format!("call {} has ended; use a new call id", target.call_id),
                ),
            );
        }
        if let Err(problem) = crate::http::refuse_storage_full(state) {
            return self.refuse(
                &sender,
                &req,
                &tag,
                Refusal::new(503, problem.detail().to_owned()).with(retry),
            );
        }
        if let Some(name) = &target.display_name {
            state
                .transcripts
                .set_display_name(&target.call_id, &target.participant_id, name);
        }
        #[cfg(any(test, feature = "fault-injection"))]
        test_delay(&req).await;
        // A CANCEL answered already (487): nothing is placed.
        if cancelled(&mut events) {
            info!(call = %target.call_id, "SIP INVITE cancelled before its media was set up");
            return;
        }
        let secret = random_token(16);
        let public_id = format!("s{}", random_token(4));
        let max_sessions = state.config.limits.max_sessions;
        let Some(placement) =
            state
                .registry
                .place_session(&target.call_id, &secret, "", max_sessions, || {
                    state.least_loaded_worker()
                })
        else {
            return self.refuse(
                &sender,
                &req,
                &tag,
                Refusal::new(
                    503,
                    format!("this node carries its maximum of {max_sessions} sessions"),
                )
                .with(retry),
            );
        };
        let command = Command::CreateSip(Box::new(CreateSip {
            call_id: target.call_id.clone(),
            secret: secret.clone(),
            public_id: public_id.clone(),
            participant_id: target.participant_id.clone(),
            media: negotiated.as_ref().map(|(_, n)| n.media.clone()),
            signalling_ip: source_of(&req).as_ref().and_then(source_ip),
            early_inputs: placement.early_inputs,
            resume: placement.resume,
        }));
        let outcome = match state.workers.get(placement.worker) {
            Some(worker) => worker.ask(command, ANSWER_TIMEOUT).await,
            None => Err(crate::media::AskError::Gone),
        };
        let local_rtp = match outcome {
            Ok(Reply::Sip(Ok(addr))) => addr,
            outcome => {
                state.registry.remove_session(&secret);
                let refusal = match outcome {
                    Ok(Reply::Sip(Err(CreateSessionError::ShuttingDown))) => {
                        Refusal::new(503, "this node is shutting down").with(retry)
                    }
                    Ok(Reply::Sip(Err(
                        e @ (CreateSessionError::NoUsableAudio | CreateSessionError::BadOffer(_)),
                    ))) => {
                        self.count(IngestError::NoCommonCodec);
                        Refusal::new(488, e.to_string())
                    }
                    Ok(Reply::Sip(Err(e))) => Refusal::new(500, e.to_string()),
                    Ok(other) => Refusal::new(500, format!("unexpected worker reply {other:?}")),
                    Err(e) => {
                        self.count(IngestError::WorkerUnavailable);
                        Refusal::new(503, format!("the media worker did not answer: {e}"))
                            .with(retry)
                    }
                };
                info!(call = %target.call_id, status = refusal.status, "SIP INVITE refused by the media worker");
                return self.refuse(&sender, &req, &tag, refusal);
            }
        };
        // A CANCEL that came while the worker was asked has been answered
        // (487): the session it made is not wanted.
        if cancelled(&mut events) {
            info!(call = %target.call_id, "SIP INVITE cancelled while its media was set up");
            return self.end_session(&target.call_id, &secret).await;
        }
        let origin = Origin {
            session_id: now_secs(),
            version: 1,
        };
        let (body, media) = match &negotiated {
            Some((offer, chosen)) => (
                sdp::answer(offer, chosen, local_rtp, origin),
                Some(chosen.media.clone()),
            ),
            None => (sdp::offer(local_rtp, origin), None),
        };
        let remote_tag = req
            .from_header()
            .ok()
            .and_then(|f| f.tag().ok().flatten())
            .map(|t| t.value().to_owned())
            .unwrap_or_default();
        let sip_call_id = req
            .call_id_header()
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        let key = (sip_call_id, tag.clone());
        let bye = match (conn, source_of(&req)) {
            (Some(conn), Some(peer)) => self.make_bye(&req, &tag, conn, peer),
            _ => None,
        };
        self.info.dialogs.lock().insert(
            key.clone(),
            Dialog {
                call_id: target.call_id.clone(),
                secret: secret.clone(),
                public_id: public_id.clone(),
                remote_tag,
                origin,
                local_rtp,
                media,
                updating: false,
                bye,
            },
        );
        let ok = self.ok_response(&req, &tag, &body, reliable);
        let _ = sender.send(TransactionEvent::Respond(ok.clone()));
        state
            .metrics
            .ingest_setup_seconds
            .with_label_values(&["sip"])
            .observe(started.elapsed().as_secs_f64());
        info!(
            call = %target.call_id,
            sip = %public_id,
            participant = %target.participant_id,
            late_offer = negotiated.is_none(),
            "SIP dialog answered"
        );
        self.await_ack(&sender, ok, reliable, events, key, negotiated.is_none())
            .await;
    }

    /// The 200 to an INVITE: Contact, Allow, Record-Route copied (§12.1.1),
    /// the SDP.
    fn ok_response(&self, req: &Request, tag: &str, sdp: &str, reliable: bool) -> Response {
        let transport = if reliable { ";transport=tcp" } else { "" };
        let mut extra = vec![
            Header::Contact(format!("<sip:hearken@{}{transport}>", self.info.contact_host).into()),
            Header::Allow(ALLOW.into()),
        ];
        for h in req.headers.iter() {
            if let Header::RecordRoute(rr) = h {
                extra.push(Header::RecordRoute(rr.clone()));
            }
        }
        self.response_with_body(
            req,
            200,
            Some(tag),
            None,
            extra,
            Some(("application/sdp", sdp.as_bytes().to_vec())),
        )
    }

    /// Retransmits a 2xx over UDP (T1 doubling to T2, §13.3.1.4) until its
    /// ACK; then, for a late offer, takes the answer from the ACK. No ACK
    /// within 64·T1, or an ACK without a usable answer: the dialog ends.
    async fn await_ack(
        &self,
        sender: &TransactionEventSender,
        ok: Response,
        reliable: bool,
        mut events: mpsc::UnboundedReceiver<PumpEvent>,
        key: DialogKey,
        answer_in_ack: bool,
    ) {
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        let mut interval = T1;
        let mut next = tokio::time::Instant::now() + interval;
        let ack = loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(PumpEvent::Ack(ack)) => break Some(ack),
                    Some(PumpEvent::Cancelled) => {
                        // Cancelled just before the 2xx went out: the caller
                        // has its 487 and no dialog, so no BYE.
                        let removed = self.info.dialogs.lock().remove(&key);
                        if let Some(d) = removed {
                            self.end_session(&d.call_id, &d.secret).await;
                        }
                        return;
                    }
                    Some(PumpEvent::Ended) | None => break None,
                },
                _ = tokio::time::sleep_until(next), if !reliable => {
                    let _ = sender.send(TransactionEvent::Respond(ok.clone()));
                    interval = (interval * 2).min(T2);
                    next = tokio::time::Instant::now() + interval;
                }
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        let Some(dialog) = self.info.dialogs.lock().get(&key).cloned() else {
            // Ended meanwhile (a BYE, the engine).
            return;
        };
        let Some(ack) = ack else {
            info!(call = %dialog.call_id, sip = %dialog.public_id, "SIP 2xx got no ACK; ending the dialog");
            return self.end_dialog(&key, &dialog).await;
        };
        if !answer_in_ack {
            return;
        }
        let text = String::from_utf8_lossy(&ack.body);
        let media = if is_sdp(content_type(&ack).as_deref()) {
            sdp::parse(&text).and_then(|d| sdp::accept_answer(&d))
        } else {
            Err(SdpError::Malformed("the ACK carries no SDP answer".into()))
        };
        match media {
            Ok(media) => {
                if let Some(d) = self.info.dialogs.lock().get_mut(&key) {
                    d.media = Some(media.clone());
                }
                self.update_media(&dialog, media).await;
            }
            Err(e) => {
                // §14.1 / RFC 3264: an unusable answer in the ACK ends the
                // dialog with a BYE.
                self.count(IngestError::NoCommonCodec);
                info!(call = %dialog.call_id, error = %e, "SIP late offer: unusable answer in the ACK");
                self.end_dialog(&key, &dialog).await;
            }
        }
    }

    async fn update_media(&self, dialog: &Dialog, media: SipMedia) -> bool {
        let command = Command::UpdateSip {
            call_id: dialog.call_id.clone(),
            secret: dialog.secret.clone(),
            media,
        };
        match self.ask_call(&dialog.call_id, command).await {
            Ok(Some(Reply::Found(true))) => true,
            other => {
                debug!(call = %dialog.call_id, ?other, "SIP: media update not taken");
                false
            }
        }
    }

    /// Ends a dialog from Hearken's side: BYE to the caller, session ended.
    async fn end_dialog(&self, key: &DialogKey, dialog: &Dialog) {
        self.info.dialogs.lock().remove(key);
        if let Some(bye) = dialog.bye.clone() {
            tokio::spawn(bye.send());
        }
        self.end_session(&dialog.call_id, &dialog.secret).await;
    }

    /// The BYE that would end this dialog (§15.1.1): to the caller's
    /// Contact through its Record-Route, sent where the INVITE came from
    /// (symmetric, as for responses).
    fn make_bye(
        &self,
        invite: &Request,
        tag: &str,
        conn: SipConnection,
        peer: SipAddr,
    ) -> Option<Bye> {
        let from = invite.from_header().ok()?.value().to_owned();
        let to = invite.to_header().ok()?.with_tag(tag.to_owned().into());
        let call_id = invite.call_id_header().ok()?.value().to_owned();
        let target = invite
            .contact_header()
            .ok()
            .map(|c| message::name_addr(c.value()).1)
            .unwrap_or_else(|| message::name_addr(&from).1);
        let transport = if conn.is_reliable() { "TCP" } else { "UDP" };
        let mut text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{transport} {};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\n",
            self.info.contact_host,
            random_token(10),
            to.value(),
        );
        for h in invite.headers.iter() {
            if let Header::RecordRoute(rr) = h {
                text.push_str(&format!("Route: {}\r\n", rr.value()));
            }
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        let request = Request::try_from(text.as_str()).ok()?;
        Some(Bye {
            endpoint: self.endpoint.clone(),
            conn,
            peer,
            request,
        })
    }

    /// A re-INVITE (§14): hold and resume (`sendonly`/`inactive` →
    /// `UpdateSip` with that direction), a new address or codec; without
    /// SDP, Hearken offers and the ACK answers.
    async fn reinvite(self: Arc<Self>, mut tx: Transaction) {
        let Some((key, dialog)) = self.dialog_of(&tx.original) else {
            return self.unknown_dialog(&mut tx).await;
        };
        let tag = key.1.clone();
        let started_update = match self.info.dialogs.lock().get_mut(&key) {
            Some(d) if !d.updating => {
                d.updating = true;
                true
            }
            _ => false,
        };
        if !started_update {
            // §14.2: an INVITE while one is pending.
            let resp = self.response(&tx.original, 491, Some(&tag), None, vec![]);
            let _ = tx.respond(resp).await;
            return;
        }
        let req = tx.original.clone();
        let sender = tx.tu_sender.clone();
        let reliable = tx
            .connection
            .as_ref()
            .is_some_and(SipConnection::is_reliable);
        let events = spawn_pump(tx, self.clone(), tag.clone());
        let done = |uas: &Self| {
            if let Some(d) = uas.info.dialogs.lock().get_mut(&key) {
                d.updating = false;
            }
        };
        let origin = Origin {
            session_id: dialog.origin.session_id,
            version: dialog.origin.version + 1,
        };
        let body = if req.body.is_empty() {
            sdp::offer(dialog.local_rtp, origin)
        } else {
            if !is_sdp(content_type(&req).as_deref()) {
                self.count(IngestError::UnsupportedMediaType);
                let r = Refusal::new(415, "the INVITE body must be application/sdp")
                    .with(Header::Accept("application/sdp".into()));
                done(&self);
                return self.refuse(&sender, &req, &tag, r);
            }
            let text = String::from_utf8_lossy(&req.body);
            let parsed = sdp::parse(&text).and_then(|o| sdp::negotiate(&o).map(|n| (o, n)));
            let (offer, chosen) = match parsed {
                Ok(v) => v,
                Err(e) => {
                    // The dialog keeps its media (§14.2).
                    let r = self.sdp_refusal(&e);
                    done(&self);
                    return self.refuse(&sender, &req, &tag, r);
                }
            };
            if !self.update_media(&dialog, chosen.media.clone()).await {
                debug!(call = %dialog.call_id, "SIP re-INVITE: the engine did not take the change");
            }
            if let Some(d) = self.info.dialogs.lock().get_mut(&key) {
                d.media = Some(chosen.media.clone());
            }
            info!(call = %dialog.call_id, sip = %dialog.public_id, direction = ?chosen.media.direction, "SIP re-INVITE");
            sdp::answer(&offer, &chosen, dialog.local_rtp, origin)
        };
        if let Some(d) = self.info.dialogs.lock().get_mut(&key) {
            d.origin = origin;
        }
        let ok = self.ok_response(&req, &tag, &body, reliable);
        let _ = sender.send(TransactionEvent::Respond(ok.clone()));
        done(&self);
        self.await_ack(&sender, ok, reliable, events, key, req.body.is_empty())
            .await;
    }
}

/// Test hook: an INVITE with `X-Hearken-Test-Delay: {ms}` (at most 5 s)
/// waits that long before its media is asked for, as a slow media worker
/// would, so a test can CANCEL it in flight. Not in release builds.
#[cfg(any(test, feature = "fault-injection"))]
async fn test_delay(req: &Request) {
    if let Some(ms) =
        header_value(req, "X-Hearken-Test-Delay").and_then(|v| v.trim().parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(5_000))).await;
    }
}

/// Whether the pump reported a CANCEL (without waiting).
fn cancelled(events: &mut mpsc::UnboundedReceiver<PumpEvent>) -> bool {
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, PumpEvent::Cancelled) {
            return true;
        }
    }
    false
}

/// Starts the task that owns an INVITE's transaction (see the module docs).
fn spawn_pump(tx: Transaction, uas: Arc<Uas>, tag: String) -> mpsc::UnboundedReceiver<PumpEvent> {
    let (events, rx) = mpsc::unbounded_channel();
    tokio::spawn(pump(tx, uas, tag, events));
    rx
}

async fn pump(
    mut tx: Transaction,
    uas: Arc<Uas>,
    tag: String,
    events: mpsc::UnboundedSender<PumpEvent>,
) {
    while let Some(msg) = tx.receive().await {
        let SipMessage::Request(req) = msg else {
            continue;
        };
        match req.method {
            Method::Cancel => {
                // The transaction answered the CANCEL (200) and passed it up
                // only because no final response had gone out: the INVITE
                // gets 487 (§9.2), and any later response is refused by the
                // transaction's state machine.
                let resp = uas.response(&tx.original, 487, Some(&tag), None, vec![]);
                let _ = tx.respond(resp).await;
                let _ = events.send(PumpEvent::Cancelled);
            }
            Method::Ack => {
                let _ = events.send(PumpEvent::Ack(Box::new(req)));
            }
            _ => {}
        }
        if tx.is_terminated() {
            break;
        }
    }
    let _ = events.send(PumpEvent::Ended);
}

/// The request URI `uri` with its host and port replaced by `owner`
/// (`sip:room-7@10.0.0.5:5060` to `sip:room-7@10.0.0.8:5060`), keeping the
/// user part that names the call.
fn redirect_uri(uri: &str, owner: &str) -> String {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    match rest.split_once('@') {
        Some((user, _)) => format!("sip:{user}@{owner}"),
        None => format!("sip:{owner}"),
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::redirect_uri;

    #[test]
    fn a_redirect_keeps_the_user_part_that_names_the_call() {
        assert_eq!(
            redirect_uri("sip:room-7@10.0.0.5:5060;transport=udp", "10.0.0.8:5070"),
            "sip:room-7@10.0.0.8:5070"
        );
        assert_eq!(
            redirect_uri("sip:10.0.0.5", "10.0.0.8:5060"),
            "sip:10.0.0.8:5060"
        );
    }
}

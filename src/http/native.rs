//! Native ingest signalling: `POST /v1/calls/{call_id}/native` starts a
//! call's native ingest (the platform pushes each speaker's RTP over QUIC,
//! and no participant joins the call), `PATCH` adds and removes flows,
//! `DELETE` ends it. The flow mapping is signalled here, out of band, as
//! RTP over QUIC expects; the media goes to `ingest.quic.listen`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearken_core::ids::CallId;
use hearken_core::roq;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use super::consent::{ParticipantBody, deliver_participant};
use super::extract::{CallPath, JsonBody, MAX_PARTICIPANT_ID};
use super::problem::{Problem, ProblemType};
use super::{
    Route, ask_call_worker, ask_worker, call_ended, redirect, refuse_node_full,
    refuse_shutting_down, refuse_storage_full, route_new_session,
};
use crate::control::meetings::Admission;
use crate::ingest::TOKEN_FLOW_ID;
use crate::ingest::native::NativeCall;
use crate::media::transcode::WireCodec;
use crate::media::{Command, CreateNative, CreateSessionError, NativeFlow, Reply};
use crate::server::AppState;

/// How long a worker may take to start or change a native session.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `DELETE` waits for the call's files to be final.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most flows one call's native ingest carries.
const MAX_FLOWS: usize = 256;

/// A codec a native flow may carry.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlowCodec {
    /// Opus, recorded as it comes.
    Opus,
    /// G.711 µ-law (8 kHz), encoded once to Opus for the recording.
    Pcmu,
    /// G.711 A-law (8 kHz), encoded once to Opus for the recording.
    Pcma,
    /// G.722 (16 kHz audio), encoded once to Opus for the recording.
    G722,
}

impl From<FlowCodec> for WireCodec {
    fn from(c: FlowCodec) -> Self {
        match c {
            FlowCodec::Opus => Self::Opus,
            FlowCodec::Pcmu => Self::Pcmu,
            FlowCodec::Pcma => Self::Pcma,
            FlowCodec::G722 => Self::G722,
        }
    }
}

/// One speaker's flow in a native request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowBody {
    /// Whose voice the flow carries.
    pub participant_id: String,
    /// The RoQ flow id (a QUIC varint, unique on the connection).
    pub flow_id: u64,
    /// The flow's codec.
    pub codec: FlowCodec,
    /// The RTP payload type of its audio.
    pub payload_type: u8,
    /// The RTP payload type of its RFC 4733 telephone events, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf_payload_type: Option<u8>,
    /// The participant's details, as for `PUT …/participants/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ParticipantBody>,
}

/// Body of `POST /v1/calls/{call_id}/native`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeBody {
    /// The speakers' flows.
    pub participants: Vec<FlowBody>,
}

/// Body of `PATCH /v1/calls/{call_id}/native`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativePatch {
    /// Flows to add.
    #[serde(default)]
    pub add: Vec<FlowBody>,
    /// Flow ids to remove (their speakers leave the call).
    #[serde(default)]
    pub remove: Vec<u64>,
}

fn bad(detail: String) -> Problem {
    Problem::new(ProblemType::BadFlow, detail)
}

/// Checks one flow; `at` names it in the error.
fn check_flow(at: &str, flow: &FlowBody) -> Result<NativeFlow, Problem> {
    let id = &flow.participant_id;
    if id.is_empty() || id.len() > MAX_PARTICIPANT_ID || id.chars().any(char::is_control) {
        return Err(bad(format!(
            "{at}.participant_id: must be 1-{MAX_PARTICIPANT_ID} characters without control characters"
        )));
    }
    if flow.flow_id >= TOKEN_FLOW_ID {
        return Err(bad(format!(
            "{at}.flow_id: must be below {} (the largest varint is the token stream's)",
            TOKEN_FLOW_ID
        )));
    }
    for (field, pt) in [
        ("payload_type", Some(flow.payload_type)),
        ("dtmf_payload_type", flow.dtmf_payload_type),
    ] {
        if let Some(pt) = pt
            && (pt > 127 || (64..=95).contains(&pt))
        {
            // RFC 5761 §4: 64-95 would read as RTCP on a shared flow.
            return Err(bad(format!(
                "{at}.{field}: {pt} is not an RTP payload type (0-63 or 96-127)"
            )));
        }
    }
    if flow.dtmf_payload_type == Some(flow.payload_type) {
        return Err(bad(format!(
            "{at}.dtmf_payload_type: must differ from payload_type"
        )));
    }
    if let Some(details) = &flow.details {
        details.check(&format!("{at}.details."))?;
    }
    Ok(NativeFlow {
        flow_id: flow.flow_id,
        participant_id: flow.participant_id.clone(),
        codec: flow.codec.into(),
        payload_type: flow.payload_type,
        dtmf_payload_type: flow.dtmf_payload_type,
    })
}

/// Checks flows that will live together: each valid, flow ids and
/// participants unique.
fn check_flows(
    field: &str,
    flows: &[FlowBody],
    existing: &[NativeFlow],
) -> Result<Vec<NativeFlow>, Problem> {
    let mut ids: HashSet<u64> = existing.iter().map(|f| f.flow_id).collect();
    let mut people: HashSet<&str> = existing.iter().map(|f| f.participant_id.as_str()).collect();
    let mut out = Vec::with_capacity(flows.len());
    for (i, flow) in flows.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let checked = check_flow(&at, flow)?;
        if !ids.insert(flow.flow_id) {
            return Err(bad(format!(
                "{at}.flow_id: {} is already used by another flow of this call",
                flow.flow_id
            )));
        }
        if !people.insert(&flow.participant_id) {
            return Err(bad(format!(
                "{at}.participant_id: {:?} already has a flow in this call",
                flow.participant_id
            )));
        }
        out.push(checked);
    }
    if ids.len() > MAX_FLOWS {
        return Err(bad(format!("{field}: at most {MAX_FLOWS} flows per call")));
    }
    Ok(out)
}

/// Hands each flow's details to the call (kept, and applied if it is live).
async fn deliver_flow_details(
    state: &Arc<AppState>,
    call_id: &CallId,
    flows: &[FlowBody],
) -> Result<(), Problem> {
    for flow in flows {
        if let Some(body) = &flow.details {
            deliver_participant(state, call_id, &flow.participant_id, body).await?;
        }
    }
    Ok(())
}

fn flows_json(flows: &[NativeFlow]) -> serde_json::Value {
    flows
        .iter()
        .map(|f| {
            json!({
                "participant_id": f.participant_id,
                "flow_id": f.flow_id,
                "codec": f.codec.name(),
                "payload_type": f.payload_type,
                "dtmf_payload_type": f.dtmf_payload_type,
            })
        })
        .collect()
}

/// `POST /v1/calls/{call_id}/native`: start a call's native ingest.
pub async fn post(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    JsonBody(body): JsonBody<NativeBody>,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let Some(quic) = state.quic.clone() else {
        return Err(Problem::new(
            ProblemType::NativeIngestOff,
            "native ingest is off on this node: set ingest.quic.listen",
        ));
    };
    if let Route::Owner { url, .. } = route_new_session(&state, &call_id, "native").await? {
        info!(call = %call_id, owner = %url, "native ingest redirected to the call's owner");
        return redirect(&format!(
            "{}/v1/calls/{call_id}/native",
            url.trim_end_matches('/')
        ));
    }
    if body.participants.is_empty() {
        return Err(bad("participants: at least one flow is needed".into()));
    }
    let flows = check_flows("participants", &body.participants, &[])?;
    if let Admission::Refuse(reason) = state.meetings.admit(&call_id) {
        return Err(Problem::new(ProblemType::NotRecorded, reason));
    }
    if state.store.call_has_ended(&call_id) {
        return Err(call_ended(&call_id));
    }
    refuse_storage_full(&state)?;
    if state.natives.contains(&call_id) {
        return Err(Problem::new(
            ProblemType::NativeIngestExists,
            format!("call {call_id} already has a native ingest; PATCH it to change its flows"),
        ));
    }
    deliver_flow_details(&state, &call_id, &body.participants).await?;

    let secret = super::whip::random_hex(16);
    let public_id = format!("n{}", super::whip::random_hex(4));
    let Some(placement) = state.registry.place_session(
        &call_id,
        &secret,
        "",
        state.config.limits.max_sessions,
        || state.least_loaded_worker(),
    ) else {
        return Err(refuse_node_full(&state));
    };
    let worker = placement.worker;
    let command = Command::CreateNative(Box::new(CreateNative {
        call_id: call_id.clone(),
        secret: secret.clone(),
        public_id: public_id.clone(),
        flows: flows.clone(),
        early_inputs: placement.early_inputs,
        resume: placement.resume,
    }));
    let session = match ask_worker(&state, worker, command, ANSWER_TIMEOUT).await {
        Ok(Reply::Native(Ok(key))) => key,
        outcome => {
            state.registry.remove_session(&secret);
            return Err(match outcome {
                Ok(Reply::Native(Err(CreateSessionError::ShuttingDown))) => {
                    refuse_shutting_down(&state)
                }
                Ok(Reply::Native(Err(e))) => Problem::internal(e),
                Ok(other) => Problem::internal(format!("unexpected worker reply {other:?}")),
                Err(problem) => problem,
            });
        }
    };
    let token = super::whip::random_hex(32);
    state.natives.insert(
        &token,
        NativeCall {
            call_id: call_id.clone(),
            secret,
            worker,
            session,
            inlet: state.workers[worker].native_inlet(),
            flows: flows.clone(),
        },
    );
    state
        .metrics
        .ingest_setup_seconds
        .with_label_values(&["native"])
        .observe(started.elapsed().as_secs_f64());
    info!(call = %call_id, native = %public_id, worker, flows = flows.len(), "native ingest created");
    let answer = json!({
        "call_id": call_id.as_str(),
        "quic": quic.advertised,
        "alpn": String::from_utf8_lossy(roq::ALPN),
        "connection_token": token,
        "token_flow_id": TOKEN_FLOW_ID,
        "cert_sha256": quic.cert_sha256,
        "flows": flows_json(&flows),
        "consent": {
            "prompts": false,
            "notice": format!(
                "native participants cannot hear Hearken: show your own recording notice and report it with POST /v1/calls/{call_id}/participants/{{participant_id}}/notice, and consent decisions with POST …/consent"
            ),
            "provider_notifies": state.config.consent.provider_notifies,
        },
    });
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/calls/{call_id}/native")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `PATCH /v1/calls/{call_id}/native`: add and remove flows mid-call.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    JsonBody(body): JsonBody<NativePatch>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Some(native) = state.natives.by_call(&call_id) else {
        return Err(Problem::not_found(format!(
            "call {call_id} has no native ingest"
        )));
    };
    for id in &body.remove {
        if !native.flows.iter().any(|f| f.flow_id == *id) {
            return Err(bad(format!("remove: flow {id} is not a flow of this call")));
        }
    }
    let kept: Vec<NativeFlow> = native
        .flows
        .iter()
        .filter(|f| !body.remove.contains(&f.flow_id))
        .cloned()
        .collect();
    let added = check_flows("add", &body.add, &kept)?;
    deliver_flow_details(&state, &call_id, &body.add).await?;
    let command = Command::UpdateNative {
        call_id: call_id.clone(),
        secret: native.secret.clone(),
        add: added.clone(),
        remove: body.remove.clone(),
    };
    match ask_call_worker(&state, &call_id, command, ANSWER_TIMEOUT).await? {
        Some(Reply::Found(true)) => {}
        _ => {
            return Err(Problem::not_found(format!(
                "call {call_id} has no native ingest"
            )));
        }
    }
    let mut flows = kept;
    flows.extend(added);
    state.natives.set_flows(&call_id, flows.clone());
    Ok(Json(json!({
        "call_id": call_id.as_str(),
        "flows": flows_json(&flows),
    })))
}

/// `DELETE /v1/calls/{call_id}/native`: end the call's native ingest. When
/// it was the call's last session, answers once its recordings are final.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Response, Problem> {
    let Some(native) = state.natives.by_call(&call_id) else {
        return Err(Problem::not_found(format!(
            "call {call_id} has no native ingest"
        )));
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    let command = Command::DeleteSession {
        call_id: call_id.clone(),
        secret: native.secret.clone(),
        done: Some(done),
    };
    let found = matches!(
        ask_call_worker(&state, &call_id, command, ANSWER_TIMEOUT).await?,
        Some(Reply::Found(true))
    );
    state.natives.remove_session(&native.secret);
    state.registry.remove_session(&native.secret);
    if !found {
        return Err(Problem::not_found(format!(
            "call {call_id} has no native ingest"
        )));
    }
    let _ = tokio::time::timeout(FINISH_TIMEOUT, finished).await;
    Ok(StatusCode::OK.into_response())
}

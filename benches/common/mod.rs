//! Fixtures shared by the benches: real Opus packets, and a consent engine
//! or conference whose speakers have all consented.

#![allow(dead_code)] // each bench uses a different part

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hearken_core::conference::{Conference, ConferenceOutput, ParticipantIdx, SessionKey};
use hearken_core::consent::engine::{
    ConsentEngine, ConsentMethod, ConsentOutput, Decision, DeclinePolicy, Delivery, EngineConfig,
};
use hearken_core::consent::rules::{Policy, Rules};
use hearken_core::ids::CallId;

/// 20 ms at 48 kHz.
pub const FRAME: u64 = 960;

/// The Opus packets of a test recording (headers skipped), in order.
pub fn opus_packets(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/media/test/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let mut packets = Vec::new();
    while let Some(p) = reader.read_packet().expect("a valid Ogg stream") {
        packets.push(p.data);
    }
    // OpusHead and OpusTags.
    packets.split_off(2)
}

/// A talking (non-DTX) 20 ms packet of `speaker-a.opus`, the largest there.
pub fn speech_packet() -> Vec<u8> {
    opus_packets("speaker-a.opus")
        .into_iter()
        .max_by_key(Vec::len)
        .expect("packets")
}

/// `n` participant ids shaped like the msid stream ids browsers send (UUIDs).
pub fn participant_ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:08x}-7c1e-4d2a-9b3f-{:012x}", 0x5eed_0000 + i, i * 7919))
        .collect()
}

fn engine() -> ConsentEngine {
    ConsentEngine::new(
        Arc::new(Rules::builtin()),
        EngineConfig {
            policy: Policy::default(),
            recorder_location: None,
            grace: 0,
            decline_policy: DeclinePolicy::ExcludeParticipant,
            ..EngineConfig::default()
        },
    )
}

/// A consent engine whose `ids` joined and consented (API), then each left
/// and came back `cycles` times, so every gate has a history of changes to
/// search. Returns the engine and the call time of the last change.
pub fn consented_engine(ids: &[String], cycles: u64) -> (ConsentEngine, u64) {
    let mut e = engine();
    let mut t = 0;
    for id in ids {
        e.handle_join(id, t);
    }
    for id in ids {
        t += FRAME;
        e.handle_signal(
            id,
            Decision::Granted,
            ConsentMethod::Api,
            t,
            Default::default(),
        );
    }
    for _ in 0..cycles {
        for id in ids {
            t += FRAME;
            e.handle_leave(id, t);
            t += FRAME;
            e.handle_join(id, t);
        }
    }
    while e.poll_output().is_some() {}
    (e, t)
}

/// A started conference (call time zero at `t0`) with one session carrying
/// one speaker per id, all consented. Returns the speakers' indices.
pub fn consented_conference(ids: &[String], t0: Instant) -> (Conference, Vec<ParticipantIdx>) {
    let mut c = Conference::new(CallId::parse("bench-call").expect("call id"), engine());
    let session = SessionKey(1);
    c.handle_session_added(session, "s1");
    let speakers = ids
        .iter()
        .enumerate()
        .map(|(i, id)| c.handle_speaker_added(session, &i.to_string(), Some(id), t0))
        .collect();
    c.handle_session_connected(session, t0, Utc::now());
    let at = t0 + Duration::from_millis(20);
    for id in ids {
        c.handle_signal(
            id,
            Decision::Granted,
            ConsentMethod::Api,
            Default::default(),
            at,
        );
    }
    // Play the prompts at once (as for a client that cannot hear the bot).
    let mut prompts = Vec::new();
    while let Some(o) = c.poll_output() {
        if let ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, to }) = o {
            prompts.push((prompt, to));
        }
    }
    for (prompt, to) in prompts {
        c.handle_prompt_played(prompt, &to, Delivery::Inaudible, at, at);
    }
    while c.poll_output().is_some() {}
    (c, speakers)
}

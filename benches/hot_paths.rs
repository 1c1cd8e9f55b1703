//! Micro-benchmarks of the per-frame core: the speaker timeline, Ogg page
//! writing (the track writer and the raw Ogg muxer), the consent gate, the
//! conference's per-frame work (timeline + gate), and all of it together as
//! the recording path runs it for one received frame.
//!
//! One iteration is one 20 ms Opus frame unless the bench name says
//! otherwise. Frames are real packets of `media/test/speaker-a.opus`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hearken_core::conference::{AudioFrame, ConferenceOutput, SessionKey};
use hearken_core::consent::engine::Judgement;
use hearken_core::ogg::{OggOpusWriter, OpusHead};
use hearken_core::speaker::{SpeakerTimeline, TimelineConfig};
use hearken_core::track::{DEFAULT_PRE_SKIP, FrameOutcome, TrackWriter};

mod common;
use common::FRAME;

/// Deterministic arrival jitter of frame `i`, in 48 kHz samples (0-30 ms).
fn jitter(i: u64) -> u64 {
    (i * 7_919) % 1_440
}

fn timeline(c: &mut Criterion) {
    c.bench_function("timeline/handle_frame", |b| {
        let mut t = SpeakerTimeline::new(TimelineConfig::default());
        let rtp0 = 3_000_000_000u64;
        t.handle_frame(rtp0, 0);
        let mut i = 1u64;
        b.iter(|| {
            let p = t.handle_frame(
                black_box(rtp0 + i * FRAME),
                black_box(i * FRAME + jitter(i)),
            );
            i += 1;
            black_box(p)
        });
    });
}

fn ogg(c: &mut Criterion) {
    // The recording's packets in order (22-90 bytes, 58 on average).
    let packets = common::opus_packets("speaker-a.opus");
    let n = packets.len();
    let mut group = c.benchmark_group("ogg");
    // The track writer as the recorder drives it: place the frame (PLC fill
    // if a gap, push it, close the page when a second is unflushed or the
    // body reaches 4 KiB), then take whatever pages are complete.
    group.bench_function("track_handle_frame+poll_output", |b| {
        let mut w = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        let mut i = 0u64;
        b.iter(|| {
            let packet = &packets[(i % n as u64) as usize];
            let outcome = w.handle_frame(black_box(i * FRAME), black_box(packet));
            assert!(matches!(outcome, Ok(FrameOutcome::Written { .. })));
            i += 1;
            black_box(w.poll_output())
        });
    });
    // The raw muxer: append one packet to the open page.
    group.bench_function("muxer_push_packet", |b| {
        let head = OpusHead {
            channels: 2,
            pre_skip: DEFAULT_PRE_SKIP,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let mut w = OggOpusWriter::new(1, &head, "hearken", &[]);
        let mut i = 0usize;
        b.iter(|| {
            w.push_packet(black_box(&packets[i % n]), 960)
                .expect("open");
            i += 1;
            if i.is_multiple_of(50) {
                w.flush();
                black_box(w.poll_output());
            }
        });
    });
    // One iteration = one whole page of one second (50 packets), closed,
    // checksummed and taken: the per-page cost.
    group.bench_function("page_1s_50_packets", |b| {
        let head = OpusHead {
            channels: 2,
            pre_skip: DEFAULT_PRE_SKIP,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let mut w = OggOpusWriter::new(1, &head, "hearken", &[]);
        let mut i = 0usize;
        b.iter(|| {
            for _ in 0..50 {
                w.push_packet(black_box(&packets[i % n]), 960)
                    .expect("open");
                i += 1;
            }
            w.flush();
            black_box(w.poll_output())
        });
    });
    group.finish();
}

fn gate(c: &mut Criterion) {
    let mut group = c.benchmark_group("gate/allows");
    for n in [8usize, 100] {
        let ids = common::participant_ids(n);
        let (engine, end) = common::consented_engine(&ids, 10);
        for id in &ids {
            assert_eq!(
                engine.judge_at(id, end),
                Judgement::Allow,
                "gate open for {id}"
            );
        }
        group.bench_with_input(BenchmarkId::new("participants", n), &n, |b, _| {
            let mut i = 0usize;
            b.iter(|| {
                let id = &ids[i % n];
                i += 1;
                black_box(engine.judge_at(black_box(id), black_box(end + (i as u64) * FRAME)))
            });
        });
    }
    group.finish();
}

/// Frame `j` of a speaker: 20 ms apart on the RTP clock and in arrival,
/// starting 40 ms into the call (after consent was given).
fn frame(t0: Instant, j: u64, payload: &Arc<[u8]>) -> AudioFrame {
    AudioFrame {
        rtp_time: 1_000_000 + j * FRAME,
        seq_first: 100 + j,
        seq_last: 100 + j,
        arrival: t0
            + Duration::from_millis(40 + 20 * j)
            + Duration::from_micros(jitter(j) * 1_000 / 48),
        payload: payload.clone(),
        voice: Default::default(),
        source: None,
    }
}

fn conference(c: &mut Criterion) {
    let payload: Arc<[u8]> = common::speech_packet().into();
    let mut group = c.benchmark_group("conference");
    for n in [8usize, 100] {
        let ids = common::participant_ids(n);
        let t0 = Instant::now();
        let (mut conf, speakers) = common::consented_conference(&ids, t0);
        let stats = conf.handle_audio(SessionKey(1), speakers[0], frame(t0, 0, &payload));
        assert_eq!(stats.withheld, None, "the gate lets frames through");
        assert!(matches!(
            conf.poll_output(),
            Some(ConferenceOutput::Frame(_))
        ));
        // handle_audio (timeline + gate + queue the frame) and the shell's
        // poll_output that takes it; speakers in turn.
        // Criterion runs the closure once per sample: frames go on from
        // where the last sample stopped.
        let mut i = n as u64; // speaker 0 already sent frame 0
        group.bench_with_input(
            BenchmarkId::new("handle_audio+poll_output", n),
            &n,
            |b, _| {
                b.iter(|| {
                    let k = (i % n as u64) as usize;
                    let stats = conf.handle_audio(
                        SessionKey(1),
                        speakers[k],
                        frame(t0, i / n as u64 + 1, &payload),
                    );
                    i += 1;
                    black_box(stats);
                    black_box(conf.poll_output())
                });
            },
        );
    }
    group.finish();
}

/// Everything the core does for one received frame on the recording path,
/// outside str0m and the channels: conference (timeline + gate), then the
/// recorder's track writer and the pages it takes for the file.
fn recording_path(c: &mut Criterion) {
    let payloads: Vec<Arc<[u8]>> = common::opus_packets("speaker-a.opus")
        .into_iter()
        .map(Arc::from)
        .collect();
    let n = 8usize;
    let ids = common::participant_ids(n);
    let t0 = Instant::now();
    let (mut conf, speakers) = common::consented_conference(&ids, t0);
    let mut tracks: Vec<TrackWriter> = (0..n as u32)
        .map(|s| TrackWriter::new(s, DEFAULT_PRE_SKIP))
        .collect();
    let mut i = 0u64;
    c.bench_function("recording_path/8_speakers", |b| {
        b.iter(|| {
            let k = (i % n as u64) as usize;
            let j = i / n as u64;
            let payload = &payloads[(j % payloads.len() as u64) as usize];
            conf.handle_audio(SessionKey(1), speakers[k], frame(t0, j, payload));
            i += 1;
            if let Some(ConferenceOutput::Frame(f)) = conf.poll_output() {
                let track = &mut tracks[f.participant.0 as usize];
                let outcome = track.handle_frame(f.position, &f.payload);
                assert!(matches!(outcome, Ok(FrameOutcome::Written { .. })));
                black_box(track.poll_output());
            } else {
                panic!("frame withheld");
            }
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = timeline, ogg, gate, conference, recording_path
}
criterion_main!(benches);

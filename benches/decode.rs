//! Opus decode for the transcription path: libopus decoding real 20 ms
//! packets straight to 16 kHz mono (what the transcription sink does; libopus
//! resamples internally, there is no separate resampler), against decoding
//! at 48 kHz; plus the whole per-frame transcription stage for each form the
//! backend can take (decode, chunk, buffer, PCM bytes; or the Opus packet
//! passed through into an Ogg page).
//!
//! One iteration is one 20 ms packet. Packets are decoded in file order,
//! wrapping around, so the decoder state is that of a real stream.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hearken_core::ogg::{OggOpusWriter, OpusHead};
use hearken_core::opus::packet_samples;
use hearken_core::transcript::{Chunk, ChunkAudio, SpeakerStream};
use opus::{Channels, Decoder};

mod common;

fn packets() -> Vec<Vec<u8>> {
    let packets = common::opus_packets("speaker-a.opus");
    let sizes: Vec<usize> = packets.iter().map(Vec::len).collect();
    let small = sizes.iter().filter(|&&n| n <= 3).count();
    eprintln!(
        "speaker-a.opus: {} packets, {}-{} bytes (mean {:.0}), {} of <= 3 bytes (DTX), TOC {:#04x}",
        packets.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        sizes.iter().sum::<usize>() as f64 / packets.len().max(1) as f64,
        small,
        packets.first().and_then(|p| p.first()).unwrap_or(&0),
    );
    packets
}

fn decode(c: &mut Criterion) {
    let packets = packets();
    let n = packets.len();
    let mut group = c.benchmark_group("opus_decode");
    for rate in [48_000u32, 16_000] {
        group.bench_function(format!("{}k_mono", rate / 1000), |b| {
            let mut decoder = Decoder::new(rate, Channels::Mono).expect("decoder");
            // Room for the longest packet (120 ms), as the sink allocates.
            let mut pcm = vec![0i16; rate as usize * 120 / 1000];
            let mut i = 0;
            b.iter(|| {
                let samples = decoder
                    .decode(black_box(&packets[i % n]), &mut pcm, false)
                    .expect("decode");
                i += 1;
                black_box(samples)
            });
        });
    }
    // The recording is signalled as stereo (RTP Opus always is): what a
    // 2-channel 48 kHz decode of the same mono packets costs.
    group.bench_function("48k_stereo", |b| {
        let mut decoder = Decoder::new(48_000, Channels::Stereo).expect("decoder");
        let mut pcm = vec![0i16; 5760 * 2];
        let mut i = 0;
        b.iter(|| {
            let samples = decoder
                .decode(black_box(&packets[i % n]), &mut pcm, false)
                .expect("decode");
            i += 1;
            black_box(samples)
        });
    });
    group.finish();
}

/// What the transcription sink does per consented frame, minus the channel
/// and the socket, for each form of audio a backend takes: decode to 16 kHz
/// and send `linear16` bytes, or pass the Opus packet through in one Ogg page.
/// A final result acknowledges each second of audio.
fn transcription_stage(c: &mut Criterion) {
    let packets = packets();
    let n = packets.len() as u64;
    let mut group = c.benchmark_group("transcription_stage");
    // The packet waits as Opus and is decoded as it is sent.
    group.bench_function("linear16/buffer_decode16k_send", |b| {
        let packets: Vec<Arc<[u8]>> = packets.iter().map(|p| Arc::from(&p[..])).collect();
        let mut decoder = Decoder::new(16_000, Channels::Mono).expect("decoder");
        let mut pcm = vec![0i16; 1920];
        let mut stream = SpeakerStream::new(30);
        stream.handle_connected();
        let mut i = 0u64;
        b.iter(|| {
            let packet = &packets[(i % n) as usize];
            let samples = u64::from(packet_samples(packet).expect("valid packet"));
            black_box(stream.push(Chunk::opus(i * common::FRAME, samples, packet.clone())));
            let chunk = stream.poll_send().expect("connected");
            let ChunkAudio::Opus(p) = &chunk.audio else {
                unreachable!("pushed as Opus")
            };
            let decoded = decoder
                .decode(black_box(p), &mut pcm, false)
                .expect("decode");
            let wire = Chunk::pcm(chunk.call_start, pcm[..decoded].to_vec());
            black_box(wire.pcm_bytes());
            i += 1;
            if i.is_multiple_of(50) {
                let sent = (i * common::FRAME) as f64 / 48_000.0;
                black_box(stream.handle_final(0.0, sent, &[]));
            }
        });
    });
    group.bench_function("ogg_opus/passthrough_buffer_send", |b| {
        let packets: Vec<Arc<[u8]>> = packets.iter().map(|p| Arc::from(&p[..])).collect();
        let mut ogg = OggOpusWriter::new(1, &OpusHead::EXACT_MONO, "bench", &[]);
        let mut stream = SpeakerStream::new(30);
        stream.handle_connected();
        let mut i = 0u64;
        b.iter(|| {
            let packet = &packets[(i % n) as usize];
            let samples = u64::from(packet_samples(packet).expect("valid packet"));
            black_box(stream.push(Chunk::opus(i * common::FRAME, samples, packet.clone())));
            let chunk = stream.poll_send().expect("connected");
            if let ChunkAudio::Opus(p) = &chunk.audio {
                ogg.push_packet(p, chunk.samples as u32)
                    .expect("open stream");
                ogg.flush();
                black_box(ogg.poll_output());
            }
            i += 1;
            if i.is_multiple_of(50) {
                let sent = (i * common::FRAME) as f64 / 48_000.0;
                black_box(stream.handle_final(0.0, sent, &[]));
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = decode, transcription_stage
}
criterion_main!(benches);

//! Tracks built the way the server records them, and an independent decoder
//! and meters to check what comes out.

use std::io::Cursor;
use std::sync::OnceLock;

use hearken_core::track::{DEFAULT_PRE_SKIP, TrackWriter};

use crate::{MixOptions, MixReport, TrackInput, mix};

pub const SECOND: u64 = 48_000;
pub const FRAME: u64 = 960;

/// Peak level of the test tones.
pub const TONE_PEAK_DBFS: f64 = -12.0;

/// Track A: real frames from 0.6 s to 3.4 s, a 440 Hz tone from 1.0 s to
/// 3.0 s, mono packets; the file ends at 3.4 s.
pub const A_FREQ: f64 = 440.0;
/// Track B: real frames from 3.6 s to 6.4 s, a 1000 Hz tone from 4.0 s to
/// 6.0 s, stereo packets; padded with PLC to the call end at 6.8 s.
pub const B_FREQ: f64 = 1000.0;
pub const A_END: u64 = 3400 * SECOND / 1000;
pub const B_END: u64 = 6800 * SECOND / 1000;

/// Seconds to call-time samples.
pub fn at(seconds: f64) -> u64 {
    (seconds * SECOND as f64).round() as u64
}

/// 20 ms Opus packets for call time `[from, to)`: a sine of `freq` at
/// [`TONE_PEAK_DBFS`] in `[tone_from, tone_to)`, silence elsewhere. Each
/// packet comes with its call-time position.
pub fn encode(
    channels: opus::Channels,
    (from, to): (f64, f64),
    freq: f64,
    (tone_from, tone_to): (f64, f64),
) -> Vec<(u64, Vec<u8>)> {
    let mut enc = opus::Encoder::new(48_000, channels, opus::Application::Audio).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(64_000)).unwrap();
    let width = match channels {
        opus::Channels::Mono => 1,
        opus::Channels::Stereo => 2,
    };
    let amplitude = 10f64.powf(TONE_PEAK_DBFS / 20.0);
    let (tone_from, tone_to) = (at(tone_from), at(tone_to));
    (at(from)..at(to))
        .step_by(FRAME as usize)
        .map(|position| {
            let pcm: Vec<f32> = (position..position + FRAME)
                .flat_map(|n| {
                    let x = if (tone_from..tone_to).contains(&n) {
                        amplitude * (std::f64::consts::TAU * freq * n as f64 / 48_000.0).sin()
                    } else {
                        0.0
                    };
                    std::iter::repeat_n(x as f32, width)
                })
                .collect();
            (position, enc.encode_vec_float(&pcm, 4000).unwrap())
        })
        .collect()
}

/// A track as the server writes it: each frame at its place, gaps PLC-filled,
/// then fill to `end` (if any) and the EOS page.
pub fn record(frames: &[(u64, Vec<u8>)], end: Option<u64>) -> Vec<u8> {
    let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
    for (position, packet) in frames {
        t.handle_frame(*position, packet).unwrap();
    }
    if let Some(end) = end {
        t.fill_to(end).unwrap();
    }
    t.finish();
    t.poll_output()
}

pub fn track_a() -> &'static [u8] {
    static A: OnceLock<Vec<u8>> = OnceLock::new();
    A.get_or_init(|| {
        let frames = encode(opus::Channels::Mono, (0.6, 3.4), A_FREQ, (1.0, 3.0));
        record(&frames, None)
    })
}

pub fn track_b() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let frames = encode(opus::Channels::Stereo, (3.6, 6.4), B_FREQ, (4.0, 6.0));
        record(&frames, Some(B_END))
    })
}

pub fn input<'a>(name: &str, ogg: &'a [u8]) -> TrackInput<'a> {
    TrackInput {
        name: name.to_owned(),
        ogg,
        muted: Vec::new(),
    }
}

/// Mixes tracks with the default options.
pub fn mix_of(tracks: &[TrackInput<'_>]) -> (Vec<u8>, MixReport) {
    let mut out = Vec::new();
    let report = mix(tracks, &MixOptions::default(), &mut out, &mut |_| {}).unwrap();
    (out, report)
}

/// The mix of A and B, made once.
pub fn mix_ab() -> &'static (Vec<u8>, MixReport) {
    static MIX: OnceLock<(Vec<u8>, MixReport)> = OnceLock::new();
    MIX.get_or_init(|| mix_of(&[input("a", track_a()), input("b", track_b())]))
}

/// Every packet with the `ogg` crate, which checks CRCs; the bool says
/// whether the stream read to its end without error.
pub fn read_packets(bytes: &[u8]) -> (Vec<ogg::Packet>, bool) {
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let mut packets = Vec::new();
    loop {
        match reader.read_packet() {
            Ok(Some(p)) => packets.push(p),
            Ok(None) => return (packets, true),
            Err(_) => return (packets, false),
        }
    }
}

/// Decodes a whole Ogg Opus file to mono as a player would (RFC 7845):
/// pre-skip dropped, the end trimmed to the last granule. Samples in
/// [-1, 1].
pub fn decode(bytes: &[u8]) -> Vec<f32> {
    let (packets, clean) = read_packets(bytes);
    assert!(clean);
    let head = &packets[0].data;
    assert_eq!(&head[..8], b"OpusHead");
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0f32; 5760];
    for p in &packets[2..] {
        let n = dec.decode_float(&p.data, &mut buf, false).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    let granule = packets.last().unwrap().absgp_page() as usize;
    assert!(granule <= pcm.len());
    pcm.truncate(granule);
    pcm.split_off(pre_skip)
}

/// Call time `[from, to)` seconds of decoded audio.
pub fn window(pcm: &[f32], from: f64, to: f64) -> &[f32] {
    &pcm[at(from) as usize..at(to) as usize]
}

pub fn rms_dbfs(pcm: &[f32]) -> f64 {
    let energy: f64 = pcm.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    10.0 * (energy / pcm.len() as f64).max(1e-20).log10()
}

/// Power at `freq` (Goertzel), normalised by the window length.
pub fn tone_power(pcm: &[f32], freq: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in pcm {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (pcm.len() as f64).powi(2)
}

/// First sample at or after `from` seconds above a quarter of the tones'
/// peak.
pub fn onset(pcm: &[f32], from: f64) -> usize {
    let threshold = 10f64.powf(TONE_PEAK_DBFS / 20.0) as f32 / 4.0;
    at(from) as usize
        + pcm[at(from) as usize..]
            .iter()
            .position(|x| x.abs() > threshold)
            .unwrap()
}

/// One page's place in the bytes and its granule, parsed by hand.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub start: usize,
    pub end: usize,
    pub granule: u64,
}

pub fn pages(bytes: &[u8]) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let h = &bytes[start..];
        assert_eq!(&h[..4], b"OggS");
        let segments = usize::from(h[26]);
        let body: usize = h[27..27 + segments].iter().map(|&l| usize::from(l)).sum();
        let end = start + 27 + segments + body;
        let granule = u64::from_le_bytes(h[6..14].try_into().unwrap());
        pages.push(Page {
            start,
            end,
            granule,
        });
        start = end;
    }
    pages
}

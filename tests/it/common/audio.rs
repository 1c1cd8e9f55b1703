//! The test speech, and decoding what was recorded (the `ogg` crate and
//! libopus: independent of the server's own muxer).

use std::path::Path;

/// The Opus packets of an Ogg Opus file (headers skipped).
pub fn read_opus_packets(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).expect("open ogg");
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut packets = Vec::new();
    let mut index = 0;
    while let Ok(Some(p)) = reader.read_packet() {
        if index >= 2 {
            packets.push(p.data);
        }
        index += 1;
    }
    packets
}

/// The repository's test speech clips.
pub fn speech(name: &str) -> Vec<Vec<u8>> {
    read_opus_packets(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("media/test")
            .join(name),
    )
}

/// About ten seconds of speech: the two test clips as A, B, A (9.73 s,
/// their last granule positions less pre-skip: 3.38 + 2.97 + 3.38).
pub fn long_speech() -> Vec<Vec<u8>> {
    let mut packets = speech("speaker-a.opus");
    packets.extend(speech("speaker-b.opus"));
    packets.extend(speech("speaker-a.opus"));
    packets
}

/// A decoded recording: mono 48 kHz samples after pre-skip, plus facts.
pub struct Decoded {
    pub samples: Vec<i16>,
    pub pre_skip: usize,
    pub pages_with_eos: usize,
}

impl Decoded {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / 48_000.0
    }

    /// RMS of `[from, to)` seconds.
    pub fn rms(&self, from: f64, to: f64) -> f64 {
        let a = ((from * 48_000.0) as usize).min(self.samples.len());
        let b = ((to * 48_000.0) as usize).min(self.samples.len());
        if b <= a {
            return 0.0;
        }
        let sum: f64 = self.samples[a..b]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum();
        (sum / (b - a) as f64).sqrt()
    }

    /// Seconds of 20 ms windows louder than `threshold` RMS.
    pub fn voiced_seconds(&self, threshold: f64) -> f64 {
        self.samples
            .chunks(960)
            .filter(|c| {
                let sum: f64 = c.iter().map(|&s| f64::from(s).powi(2)).sum();
                (sum / c.len() as f64).sqrt() > threshold
            })
            .count() as f64
            * 0.02
    }

    /// Time of the first 20 ms window louder than `threshold` RMS.
    pub fn onset(&self, threshold: f64) -> Option<f64> {
        self.samples
            .chunks(960)
            .position(|c| {
                let sum: f64 = c.iter().map(|&s| f64::from(s).powi(2)).sum();
                (sum / c.len() as f64).sqrt() > threshold
            })
            .map(|i| i as f64 * 0.02)
    }
}

/// Decodes Opus packets as sent (libopus; no pre-skip): what a client
/// spoke, to compare with what was recorded.
pub fn decode_packets(packets: &[Vec<u8>]) -> Decoded {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut samples = Vec::new();
    let mut buf = vec![0i16; 5760];
    for p in packets {
        let n = decoder.decode(p, &mut buf, false).expect("decode");
        samples.extend_from_slice(&buf[..n]);
    }
    Decoded {
        samples,
        pre_skip: 0,
        pages_with_eos: 0,
    }
}

/// Number of Ogg pages with the EOS flag, walking page headers (RFC 3533 §6).
pub fn eos_pages(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut eos = 0;
    while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
        let segments = usize::from(bytes[at + 26]);
        let lacing = &bytes[at + 27..(at + 27 + segments).min(bytes.len())];
        let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        if bytes[at + 5] & 0x04 != 0 {
            eos += 1;
        }
        at += 27 + segments + body;
    }
    assert_eq!(at, bytes.len(), "the file is a sequence of whole pages");
    eos
}

/// Decodes an Ogg Opus file with the `ogg` crate and libopus.
pub fn decode_ogg_opus(path: &Path) -> Decoded {
    let file = std::fs::File::open(path).expect("open recording");
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 5760];
    let mut pre_skip = 0;
    let mut index = 0;
    let mut eos = 0;
    while let Ok(Some(p)) = reader.read_packet() {
        if p.last_in_stream() {
            eos += 1;
        }
        if index == 0 {
            assert_eq!(&p.data[..8], b"OpusHead");
            pre_skip = usize::from(u16::from_le_bytes([p.data[10], p.data[11]]));
        } else if index >= 2 {
            let n = decoder.decode(&p.data, &mut buf, false).expect("decode");
            pcm.extend_from_slice(&buf[..n]);
        }
        index += 1;
    }
    let samples = pcm.split_off(pre_skip.min(pcm.len()));
    let _ = eos;
    Decoded {
        samples,
        pre_skip,
        pages_with_eos: eos_pages(&std::fs::read(path).expect("read recording")),
    }
}

/// Opus packets (20 ms, mono 48 kHz, libopus) of a sequence of parts: a
/// tone of `(hz, seconds)`, or digital silence where `hz` is 0. A client
/// sends silence rather than nothing, so no packet-loss concealment
/// continues a tone past its end.
pub fn tone_packets(parts: &[(f64, f64)]) -> Vec<Vec<u8>> {
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
        .expect("encoder");
    let mut packets = Vec::new();
    let mut phase = 0.0f64;
    for &(hz, seconds) in parts {
        for _ in 0..(seconds / 0.02).round() as usize {
            let frame: Vec<i16> = (0..960)
                .map(|_| {
                    let s = if hz > 0.0 {
                        // -12 dBFS peak.
                        (phase.sin() * 0.25 * 32767.0) as i16
                    } else {
                        0
                    };
                    phase += 2.0 * std::f64::consts::PI * hz / 48_000.0;
                    s
                })
                .collect();
            let mut out = vec![0u8; 1500];
            let n = encoder.encode(&frame, &mut out).expect("encode");
            out.truncate(n);
            packets.push(out);
        }
    }
    packets
}

impl Decoded {
    /// Amplitude of the `hz` component over `[from, to)` seconds (Goertzel;
    /// a full-scale sine reads 32767), to tell which tone is where.
    pub fn tone(&self, hz: f64, from: f64, to: f64) -> f64 {
        let a = ((from * 48_000.0) as usize).min(self.samples.len());
        let b = ((to * 48_000.0) as usize).min(self.samples.len());
        if b <= a {
            return 0.0;
        }
        let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in &self.samples[a..b] {
            let s0 = f64::from(x) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        2.0 * power.max(0.0).sqrt() / (b - a) as f64
    }
}

/// A recording read strictly (see [`read_whole_pages`]).
pub struct WholePages {
    /// Seconds of audio (the last granule position less the pre-skip).
    pub seconds: f64,
    /// Whether its last page has the end-of-stream flag.
    pub ended: bool,
}

/// Reads a recording strictly: the file is whole pages to its last byte,
/// each with a good CRC (the `ogg` crate checks them), every audio packet
/// decodes, and nothing follows an end-of-stream page. Panics naming what
/// is wrong.
pub fn read_whole_pages(path: &Path) -> WholePages {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 5760];
    let (mut index, mut pre_skip, mut granule, mut ended) = (0, 0u64, 0u64, false);
    // Page bounds, from each header's lacing values (an empty page, such
    // as an EOS page after the last packet, carries no packet to read).
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    while at < bytes.len() {
        let header = &bytes[at..];
        assert!(
            header.len() >= 27 && header.starts_with(b"OggS"),
            "{path:?}: no page at byte {at}"
        );
        assert!(!ended, "{path:?}: a page after the end of stream");
        let segments = usize::from(header[26]);
        let lacing = &header[27..(27 + segments).min(header.len())];
        let len = 27 + segments + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
        assert!(
            len <= header.len(),
            "{path:?}: the page at byte {at} is cut short"
        );
        ended = header[5] & 0x04 != 0;
        at += len;
    }
    let page_ended = ended;
    ended = false;
    loop {
        let packet = match reader.read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => panic!("{path:?}: packet {index}: {e}"),
        };
        assert!(!ended, "{path:?}: a packet after the end of stream");
        if index == 0 {
            assert!(packet.data.starts_with(b"OpusHead"), "{path:?}");
            pre_skip = u64::from(u16::from_le_bytes([packet.data[10], packet.data[11]]));
        } else if index >= 2 && !packet.data.is_empty() {
            decoder
                .decode(&packet.data, &mut pcm, false)
                .unwrap_or_else(|e| panic!("{path:?}: packet {index}: {e}"));
        }
        if index >= 1 && packet.last_in_page() {
            granule = packet.absgp_page();
        }
        ended = packet.last_in_stream();
        index += 1;
    }
    WholePages {
        seconds: granule.saturating_sub(pre_skip) as f64 / 48_000.0,
        ended: page_ended,
    }
}

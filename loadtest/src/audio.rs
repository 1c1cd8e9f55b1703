//! The audio the speakers send: real Opus speech read from Ogg Opus files,
//! each packet with its RFC 6464 audio level, plus one comfort-noise packet
//! for silences.
//!
//! Everything is prepared once at startup (decoding to measure levels is
//! far too slow to do per packet for thousands of speakers), and packets are
//! kept as `Arc<[u8]>` so that handing one to str0m never copies it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opus runs at 48 kHz in RTP (RFC 7587), whatever the input rate was.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in 20 ms at 48 kHz: the packet time browsers use.
pub const FRAME_SAMPLES: u32 = 960;
/// RFC 6464 level of digital silence (-127 dBov).
pub const SILENCE_LEVEL: u8 = 127;
/// Packets at or below this level (louder than -50 dBov) are flagged as
/// voice; quieter ones are background (browsers use a VAD; speech in the
/// clips sits around -20 to -40 dBov).
pub const VOICE_LEVEL_THRESHOLD: u8 = 50;

/// Why the audio could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The directory could not be listed.
    #[error("cannot list audio directory {dir}")]
    ListDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No `*.opus` file with packets was found.
    #[error("no Ogg Opus (*.opus) speech in {0}")]
    NoClips(PathBuf),
    /// A file could not be read or is not Ogg Opus.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// libopus never entered DTX on digital silence.
    #[error("the Opus encoder produced no DTX frame for silence")]
    NoDtxFrame,
    /// libopus refused to work.
    #[error("libopus failed")]
    Opus(#[from] opus::Error),
}

/// One Opus packet ready to send.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    /// The Opus packet.
    pub data: Arc<[u8]>,
    /// Its duration in 48 kHz samples (also what the RTP timestamp advances).
    pub samples: u32,
    /// RFC 6464 level: 0 is the loudest (0 dBov), 127 silence.
    pub level: u8,
    /// The RFC 6464 voice-activity flag.
    pub voice: bool,
}

/// One speech clip, looped by the speakers that use it.
#[derive(Debug)]
pub struct Clip {
    /// File name, for messages.
    pub name: String,
    /// Its packets in order, headers skipped.
    pub packets: Vec<AudioPacket>,
}

/// Every clip, and the packets sent during silences.
#[derive(Debug)]
pub struct Audio {
    /// Non-empty list of clips.
    pub clips: Vec<Clip>,
    /// 20 ms of digital silence from an encoder with DTX (1 byte): sent
    /// every 400 ms while a DTX speaker is quiet.
    pub dtx_silence: AudioPacket,
    /// 20 ms of digital silence from an encoder without DTX: sent every
    /// 20 ms while a non-DTX speaker is quiet.
    pub silence: AudioPacket,
}

impl Audio {
    /// Reads every `*.opus` file of `dir` (sorted by name, so runs with the
    /// same seed pick the same clips) and encodes the silence packets.
    pub fn load(dir: &Path) -> Result<Self, AudioError> {
        let entries = std::fs::read_dir(dir).map_err(|source| AudioError::ListDir {
            dir: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "opus"))
            .collect();
        paths.sort();
        let mut clips = Vec::new();
        for path in paths {
            let clip = load_clip(&path)?;
            if !clip.packets.is_empty() {
                clips.push(clip);
            }
        }
        if clips.is_empty() {
            return Err(AudioError::NoClips(dir.to_owned()));
        }
        Ok(Self {
            clips,
            dtx_silence: silence_packet(true)?,
            silence: silence_packet(false)?,
        })
    }
}

/// Reads one Ogg Opus file and measures the level of each packet.
fn load_clip(path: &Path) -> Result<Clip, AudioError> {
    let bad = |message: String| AudioError::BadFile {
        path: path.to_owned(),
        message,
    };
    let raw = read_ogg_packets(path).map_err(|e| bad(e.to_string()))?;
    let Some(head) = raw.first() else {
        return Err(bad("empty Ogg stream".to_owned()));
    };
    if !head.starts_with(b"OpusHead") {
        return Err(bad("not an Ogg Opus file (no OpusHead)".to_owned()));
    }
    // Packet 0 is OpusHead, packet 1 OpusTags (RFC 7845 §3); audio follows.
    // Mono decoding downmixes a stereo clip; the level is all we need.
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?;
    // 120 ms, the longest Opus packet.
    let mut pcm = vec![0i16; 5_760];
    let mut packets = Vec::with_capacity(raw.len().saturating_sub(2));
    for (index, data) in raw.into_iter().enumerate().skip(2) {
        let samples = opus::packet::get_nb_samples(&data, SAMPLE_RATE)
            .map_err(|e| bad(format!("packet {index}: {e}")))?;
        let decoded = decoder
            .decode(&data, &mut pcm, false)
            .map_err(|e| bad(format!("packet {index}: {e}")))?;
        let level = level_dbov(&pcm[..decoded.min(pcm.len())]);
        packets.push(AudioPacket {
            data: data.into(),
            samples: u32::try_from(samples).unwrap_or(FRAME_SAMPLES),
            level,
            voice: level <= VOICE_LEVEL_THRESHOLD,
        });
    }
    Ok(Clip {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        packets,
    })
}

/// Every packet of the first logical stream of an Ogg file.
fn read_ogg_packets(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut packets = Vec::new();
    let mut serial = None;
    while let Some(packet) = reader
        .read_packet()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
    {
        // A chained file's later streams would restart with headers.
        if *serial.get_or_insert(packet.stream_serial()) != packet.stream_serial() {
            break;
        }
        packets.push(packet.data);
    }
    Ok(packets)
}

/// WebRTC's default Opus bitrate for mono speech (`maxaveragebitrate`).
const WEBRTC_BITRATE: i32 = 32_000;
/// Frames of silence encoded before giving up on a DTX frame (libopus
/// enters DTX after about 200 ms of silence).
const DTX_SEARCH_FRAMES: usize = 50;

/// The 20 ms packet an Opus encoder configured like WebRTC's (VoIP
/// application, 32 kb/s) sends for digital silence: with `dtx`, the 1-byte
/// frame libopus emits once it has entered DTX (what a DTX sender puts on
/// the wire every 400 ms); without, the steady-state silent frame every
/// 20 ms carries.
pub fn silence_packet(dtx: bool) -> Result<AudioPacket, AudioError> {
    let mut encoder =
        opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(WEBRTC_BITRATE))?;
    encoder.set_dtx(dtx)?;
    let pcm = vec![0i16; FRAME_SAMPLES as usize];
    let mut out = vec![0u8; 1_500];
    let mut found = None;
    for _ in 0..DTX_SEARCH_FRAMES {
        let len = encoder.encode(&pcm, &mut out)?;
        // Without DTX, the frames after the encoder's start-up are all alike;
        // with it, wait for the first DTX (at most 3 bytes) frame.
        if !dtx || len <= 3 {
            found = Some(len);
            if dtx {
                break;
            }
        }
    }
    let len = found.ok_or(AudioError::NoDtxFrame)?;
    out.truncate(len);
    Ok(AudioPacket {
        data: out.into(),
        samples: FRAME_SAMPLES,
        level: SILENCE_LEVEL,
        voice: false,
    })
}

/// RFC 6464 audio level of `pcm`: its RMS in -dBov (relative to the
/// 16-bit full scale), rounded and clamped to 0..=127.
pub fn level_dbov(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return SILENCE_LEVEL;
    }
    let energy: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (energy / pcm.len() as f64).sqrt();
    if rms <= 0.0 {
        return SILENCE_LEVEL;
    }
    let dbov = 20.0 * (rms / 32_768.0).log10();
    // `as` saturates; the clamp keeps 127 the floor.
    (-dbov).round().clamp(0.0, f64::from(SILENCE_LEVEL)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_rfc_6464() {
        assert_eq!(level_dbov(&[]), 127);
        assert_eq!(level_dbov(&[0; 960]), 127);
        // A full-scale square wave is 0 dBov.
        let full: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        assert_eq!(level_dbov(&full), 0);
        // A tenth of full scale is -20 dBov.
        let tenth: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 3_277 } else { -3_277 })
            .collect();
        assert_eq!(level_dbov(&tenth), 20);
        // One LSB is about -90 dBov, still above the floor.
        assert_eq!(level_dbov(&[1; 960]), 90);
    }

    fn decoded_level(packet: &AudioPacket) -> u8 {
        let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).expect("decoder");
        let mut pcm = vec![0i16; 5_760];
        let n = decoder
            .decode(&packet.data, &mut pcm, false)
            .expect("decodes");
        assert_eq!(n, FRAME_SAMPLES as usize);
        level_dbov(&pcm[..n])
    }

    #[test]
    fn the_dtx_silence_packet_is_tiny_and_decodes_to_silence() {
        let silence = silence_packet(true).expect("encoder");
        assert!(
            (1..=3).contains(&silence.data.len()),
            "{} bytes",
            silence.data.len()
        );
        assert_eq!(decoded_level(&silence), SILENCE_LEVEL);
        assert_eq!(silence.level, SILENCE_LEVEL);
        assert!(!silence.voice);
    }

    #[test]
    fn the_plain_silence_packet_is_a_full_frame_of_silence() {
        let silence = silence_packet(false).expect("encoder");
        assert!(silence.data.len() > 3, "{} bytes", silence.data.len());
        // Not bit-exact zeros out of a fresh decoder, but far below hearing.
        assert!(decoded_level(&silence) >= 90, "{}", decoded_level(&silence));
    }

    #[test]
    fn the_repository_speech_loads() {
        let audio = Audio::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../media/test"
        )))
        .expect("loads");
        for clip in &audio.clips {
            assert!(clip.packets.len() > 50, "{}", clip.name);
            assert!(
                clip.packets.iter().any(|p| p.voice),
                "{} has speech",
                clip.name
            );
            assert!(clip.packets.iter().all(|p| p.samples > 0));
        }
    }
}

//! Real speech for the tests: espeak-ng says a phrase, sox converts it to
//! 48 kHz, and (optionally) Opus encodes and decodes it as a call would.
//! Both tools come from Debian (tests/peers/install.sh `speech`).

use std::process::Command;
use std::sync::OnceLock;

use hearken_verbal::{
    Answer, ListenConfig, ListenEvent, Listener, ModelFiles, Scores, Utterance, VerbalModel,
};

/// Whether espeak-ng, sox and the English model are here. Missing ones skip
/// the test with a message, except in CI (`CI` set), where the test script
/// installs them and their absence is a failure.
pub fn speech_available() -> bool {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = AVAILABLE.get_or_init(|| {
        for tool in ["espeak-ng", "sox"] {
            let ran = Command::new(tool).arg("--version").output();
            if !ran.is_ok_and(|o| o.status.success()) {
                return Err(format!("{tool} is not installed (Debian package {tool})"));
            }
        }
        ModelFiles::find("en")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("speech tests need {why}; scripts/test.sh installs it")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why} (run tests/peers/install.sh speech)");
            false
        }
    }
}

/// `text` spoken by espeak-ng `voice` at `words_per_minute`, as 48 kHz mono PCM.
pub fn speak(text: &str, voice: &str, words_per_minute: u32) -> Vec<i16> {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &words_per_minute.to_string(), "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed for {text:?}");
    // espeak-ng writes 22050 Hz; sox resamples it (its default, high
    // quality) and dithers it with repeatable random numbers (`-R`): the
    // same phrase gives the same samples on every run.
    let out = Command::new("sox")
        .arg("-R")
        .arg(&wav)
        .args([
            "-t", "raw", "-r", "48000", "-e", "signed", "-b", "16", "-c", "1", "-",
        ])
        .output()
        .expect("run sox");
    assert!(
        out.status.success(),
        "sox failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Half a second of silence, the speech, a second and a half of silence: a
/// participant answering after the prompt.
pub fn answer_turn(speech: &[i16]) -> Vec<i16> {
    [vec![0; 24_000], speech.to_vec(), vec![0; 72_000]].concat()
}

/// Through Opus at 48 kHz, 20 ms frames, 24 kbit/s, as a browser's voice
/// stream arrives after the server decodes it.
pub fn through_opus(pcm: &[i16]) -> Vec<i16> {
    let mut encoder =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(24_000))
        .expect("bitrate");
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut out = Vec::with_capacity(pcm.len());
    let mut packet = [0u8; 1500];
    let mut frame = [0i16; 960];
    for chunk in pcm.chunks(960) {
        let mut input = [0i16; 960];
        input[..chunk.len()].copy_from_slice(chunk);
        let len = encoder.encode(&input, &mut packet).expect("encode");
        let n = decoder
            .decode(&packet[..len], &mut frame, false)
            .expect("decode");
        out.extend_from_slice(&frame[..n]);
    }
    out
}

/// Feeds `pcm` in 20 ms packets to a listener and returns its utterances.
pub fn utterances(pcm: &[i16]) -> Vec<Utterance> {
    let mut listener = Listener::new(ListenConfig::default());
    let mut found = Vec::new();
    for packet in pcm.chunks(960) {
        listener.handle_pcm(packet);
        while let Some(event) = listener.poll_event() {
            if let ListenEvent::Utterance(u) = event {
                found.push(u);
            }
        }
    }
    listener.finish();
    while let Some(event) = listener.poll_event() {
        if let ListenEvent::Utterance(u) = event {
            found.push(u);
        }
    }
    found
}

/// What one turn produced: each utterance's scores and answer.
pub struct Heard {
    pub scores: Vec<Scores>,
    pub answers: Vec<Option<Answer>>,
}

impl Heard {
    /// The first accepted answer, as the server would act on it.
    pub fn answer(&self) -> Option<&Answer> {
        self.answers.iter().flatten().next()
    }

    /// One line for the test output: the decision and the measured numbers.
    pub fn describe(&self) -> String {
        let per_frame = |a: i32, b: i32, frames: u32| {
            (f64::from(a) - f64::from(b)) * 0.1024 / f64::from(frames.max(1))
        };
        let mut parts = Vec::new();
        for s in &self.scores {
            let phones = s.phones.unwrap_or(i32::MIN / 2);
            let yes = s
                .yes
                .as_ref()
                .map(|p| format!("{} {:.2}", p.phrase, per_frame(p.score, phones, s.frames)));
            let no = s
                .not_yes
                .as_ref()
                .map(|p| format!("{} {:.2}", p.phrase, per_frame(p.score, phones, s.frames)));
            parts.push(format!(
                "[{} frames; yes-vs-phones: {}; no-vs-phones: {}]",
                s.frames,
                yes.unwrap_or_else(|| "none".into()),
                no.unwrap_or_else(|| "none".into())
            ));
        }
        let answer = match self.answer() {
            Some(a) => format!(
                "{:?} {:?} confidence {:.2} margin {}",
                a.decision,
                a.phrase,
                a.confidence,
                a.margin.map_or("none".into(), |m| format!("{m:.2}"))
            ),
            None => "no answer".into(),
        };
        format!("{answer} {}", parts.join(" "))
    }
}

/// Listens to `pcm` and recognises every utterance with `model`.
pub fn hear(model: &mut VerbalModel, pcm: &[i16]) -> Heard {
    let mut heard = Heard {
        scores: Vec::new(),
        answers: Vec::new(),
    };
    for u in utterances(pcm) {
        heard.scores.push(model.score(&u.audio).expect("score"));
        heard.answers.push(model.recognise(&u).expect("recognise"));
    }
    heard
}

/// The voices every phrase is spoken in: espeak-ng's US English (the model's
/// accent), a male, a female and another male variant, at several speeds
/// (words per minute).
pub const VOICES: &[(&str, u32)] = &[
    ("en-us", 140),
    ("en-us", 180),
    ("en-us+f3", 140),
    ("en-us+f3", 180),
    ("en-us+m3", 160),
];

/// Runs `check` on `text` in every voice, straight and through Opus, and
/// returns one line per case for the test's output.
pub fn each_case(
    model: &mut VerbalModel,
    text: &str,
    mut check: impl FnMut(&str, &Heard) -> Result<(), String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for &(voice, speed) in VOICES {
        let pcm = answer_turn(&speak(text, voice, speed));
        for (path, pcm) in [("pcm", pcm.clone()), ("opus", through_opus(&pcm))] {
            let heard = hear(model, &pcm);
            let case = format!("{text:?} {voice} {speed} wpm {path}");
            println!("{case}: {}", heard.describe());
            if let Err(why) = check(&case, &heard) {
                failures.push(format!("{case}: {why} ({})", heard.describe()));
            }
        }
    }
    failures
}

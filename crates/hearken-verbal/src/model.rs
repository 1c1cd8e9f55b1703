//! The recogniser: pocketsphinx with three searches over each utterance.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pocketsphinx::{CmdLn, PsDecoder, PsDecoderSearchExt};

use crate::error::{DecodeError, LoadError};
use crate::language::{self, Language};
use crate::listener::{SampleSpan, Utterance};

/// pocketsphinx scores are in units of log base 1.0001 shifted right by 10
/// bits (`SENSCR_SHIFT`): one unit is 1024 × ln(1.0001) ≈ 0.1024 nats.
const NATS_PER_UNIT: f64 = 1024.0 * 0.000_099_995_000_333_308;

/// The search names inside the decoder.
const YES: &str = "yes";
const NOT_YES: &str = "notyes";
const PHONES: &str = "phones";

/// sphinxbase keeps its log file in one process-wide variable, and opening a
/// new one closes the old while another decoder may be writing to it. So the
/// log is pointed at /dev/null once, by the first load, and loads are
/// serialised. The flag says whether that was done.
static LOAD_LOCK: Mutex<bool> = Mutex::new(false);

/// The languages that have a verbal-consent grammar (ISO 639-1 codes).
/// Any other language falls back to DTMF and the API.
pub fn languages() -> &'static [&'static str] {
    language::CODES
}

/// Where one language's model lies on disk: found and checked without
/// loading anything, so the server can say at start whether verbal consent
/// is available. `Send` and cheap to clone.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    language: &'static Language,
    acoustic_model: PathBuf,
    dictionary: PathBuf,
}

impl ModelFiles {
    /// The model where Debian installs it (`pocketsphinx-en-us` puts English
    /// in /usr/share/pocketsphinx/model/en-us).
    pub fn find(language: &str) -> Result<Self, LoadError> {
        let lang = language::find(language).ok_or_else(|| LoadError::NoGrammar {
            language: language.to_owned(),
        })?;
        Self::in_dir(Path::new(lang.default_dir), language)
    }

    /// The model in `dir`, laid out as Debian lays it out (the acoustic
    /// model in a subdirectory, the dictionary beside it).
    pub fn in_dir(dir: &Path, language: &str) -> Result<Self, LoadError> {
        let lang = language::find(language).ok_or_else(|| LoadError::NoGrammar {
            language: language.to_owned(),
        })?;
        let missing = |path: PathBuf| LoadError::ModelNotInstalled {
            language: lang.code,
            path,
            package: lang.package,
        };
        let acoustic_model = dir.join(lang.acoustic_model);
        // mdef is the file every acoustic model has.
        if !acoustic_model.join("mdef").is_file() {
            return Err(missing(acoustic_model.join("mdef")));
        }
        let dictionary = dir.join(lang.dictionary);
        if !dictionary.is_file() {
            return Err(missing(dictionary));
        }
        Ok(Self {
            language: lang,
            acoustic_model,
            dictionary,
        })
    }

    /// The language code of the grammar.
    pub fn language(&self) -> &'static str {
        self.language.code
    }
}

/// What a recognised answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Consent given.
    Yes,
    /// Consent refused.
    No,
}

/// A recognised answer: what the audit log records.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Yes or no.
    pub decision: Decision,
    /// The phrase recognised, as the grammar spells it ("yes i agree").
    pub phrase: String,
    /// How much better the phrase explains the audio than free speech does:
    /// the log-likelihood ratio of the phrase against the phone loop, in
    /// nats per 10 ms frame (0 = as good as any phone sequence; negative =
    /// worse). Accepted from [`Thresholds::min_confidence`] up.
    pub confidence: f32,
    /// How much better than the best competing phrase (the other decision's,
    /// or a non-answer that sounds alike), in nats per frame; `None` when the
    /// competing grammar found no path at all.
    pub margin: Option<f32>,
    /// The audio the decision was made on, in 48 kHz samples of what the
    /// listener was fed: the evidence clip (keep it only for a yes).
    pub span: SampleSpan,
}

/// When an answer is accepted (see the crate documentation, "Rejection").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The least [`Answer::confidence`] accepted.
    pub min_confidence: f32,
    /// The least [`Answer::margin`] accepted.
    pub min_margin: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_confidence: -0.45,
            min_margin: 0.15,
        }
    }
}

/// The best path of one phrase grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhraseScore {
    /// The phrase.
    pub phrase: String,
    /// What it means; `None` for a phrase that sounds like an answer and is not one.
    pub decision: Option<Decision>,
    /// Its path score (pocketsphinx units, see [`Scores`]).
    pub score: i32,
}

/// The raw result of the three searches over one utterance.
///
/// Scores are pocketsphinx path scores: log base 1.0001 shifted right by 10
/// bits (one unit ≈ 0.1024 nats), relative to the best senone of each frame
/// (all senones are computed, so the three are comparable), including the
/// grammar's weights and insertion penalties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scores {
    /// 10 ms frames decoded.
    pub frames: u32,
    /// The best consenting phrase, when a complete one was found.
    pub yes: Option<PhraseScore>,
    /// The best of the other phrases (refusals and non-answers), when a
    /// complete one was found.
    pub not_yes: Option<PhraseScore>,
    /// The best free phone sequence.
    pub phones: Option<i32>,
}

impl Scores {
    /// The decision these scores support under `thresholds`, if any, with
    /// its phrase, confidence and margin.
    pub fn decide(&self, thresholds: &Thresholds) -> Option<(Decision, String, f32, Option<f32>)> {
        if self.frames == 0 {
            return None;
        }
        // Without a phone-loop path there is nothing to measure against, and
        // a yes that cannot be measured is not taken.
        let phones = self.phones?;
        let (best, other) = match (&self.yes, &self.not_yes) {
            (Some(y), Some(n)) if y.score >= n.score => (y, Some(n)),
            (Some(y), Some(n)) => (n, Some(y)),
            (Some(y), None) => (y, None),
            (None, Some(n)) => (n, None),
            (None, None) => return None,
        };
        // A non-answer phrase that wins means the utterance is not an answer.
        let decision = best.decision?;
        let per_frame = |a: i32, b: i32| {
            ((i64::from(a) - i64::from(b)) as f64 * NATS_PER_UNIT / f64::from(self.frames)) as f32
        };
        let confidence = per_frame(best.score, phones);
        let margin = other.map(|o| per_frame(best.score, o.score));
        let accepted = confidence >= thresholds.min_confidence
            && margin.is_none_or(|m| m >= thresholds.min_margin);
        accepted.then(|| (decision, best.phrase.clone(), confidence, margin))
    }
}

/// A loaded recogniser for one language: one pocketsphinx decoder with three
/// searches (the consenting phrases, the refusing phrases, a free phone loop).
///
/// Not `Send` (the decoder is a C object behind a raw pointer): load it on
/// the thread that uses it, as [`crate::Recogniser`] does. Reuse it for every
/// utterance; each [`VerbalModel::recognise`] is independent of the ones
/// before (batch mean normalisation per utterance, searches restarted).
pub struct VerbalModel {
    decoder: PsDecoder,
    language: &'static Language,
    thresholds: Thresholds,
}

impl std::fmt::Debug for VerbalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbalModel")
            .field("language", &self.language.code)
            .field("thresholds", &self.thresholds)
            .finish_non_exhaustive()
    }
}

impl VerbalModel {
    /// Loads the model of `language` from where Debian installs it.
    pub fn load(language: &str) -> Result<Self, LoadError> {
        Self::load_files(&ModelFiles::find(language)?)
    }

    /// Loads a model found with [`ModelFiles`].
    pub fn load_files(files: &ModelFiles) -> Result<Self, LoadError> {
        let lang = files.language;
        // The decoder gets a dictionary of its own: the grammar's words as the
        // model's dictionary pronounces them, plus one word per phone for the
        // phone loop. Loading 130 000 words it never uses would cost time.
        let source =
            std::fs::read_to_string(&files.dictionary).map_err(|source| LoadError::Read {
                path: files.dictionary.clone(),
                source,
            })?;
        let words = lang.words();
        let mut dict = String::new();
        let mut found = vec![false; words.len()];
        for line in source.lines() {
            let Some(entry) = line.split_whitespace().next() else {
                continue;
            };
            // Alternative pronunciations are spelled "word(2)".
            let base = entry.split('(').next().unwrap_or(entry);
            if let Ok(i) = words.binary_search(&base) {
                found[i] = true;
                dict.push_str(line);
                dict.push('\n');
            }
        }
        if let Some(i) = found.iter().position(|f| !f) {
            return Err(LoadError::WordNotInDictionary {
                language: lang.code,
                word: words[i],
                dictionary: files.dictionary.clone(),
            });
        }
        for phone in lang.phones.iter().chain(lang.non_speech) {
            dict.push_str(&format!("{} {phone}\n", Language::phone_word(phone)));
        }
        let dict_file = temp_file(&dict)?;
        // Silence is the only filler: the model's [NOISE] and [SPEECH] fillers
        // would let "I agree" swallow the "do not" of "I do not agree".
        let filler_file = temp_file("<s> SIL\n</s> SIL\n<sil> SIL\n")?;

        let hmm = utf8(&files.acoustic_model)?;
        let dict_path = utf8(dict_file.path())?;
        let filler_path = utf8(filler_file.path())?;
        let mut args = vec![
            "hearken-verbal",
            "-hmm",
            hmm,
            "-dict",
            dict_path,
            "-fdict",
            filler_path,
            // Score every senone every frame: path scores are relative to the
            // frame's best senone, and only with all of them computed are the
            // scores of the three searches comparable.
            "-compallsen",
            "yes",
            // Wide beams: the grammars are tiny, and a pruned path makes
            // pocketsphinx return a partial one.
            "-beam",
            "1e-80",
            "-pbeam",
            "1e-80",
            "-wbeam",
            "1e-60",
            // The listener has already cut the utterance; pocketsphinx's own
            // voice detector would drop frames and change the frame count.
            "-remove_silence",
            "no",
        ];
        let mut log_silenced = LOAD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if !*log_silenced {
            args.extend(["-logfn", "/dev/null"]);
        }
        let config = CmdLn::init(true, &args).map_err(|_| LoadError::Decoder {
            step: "accept its configuration",
        })?;
        // The crate asserts when ps_init returns NULL (an unreadable model).
        let decoder = catch_unwind(AssertUnwindSafe(|| PsDecoder::init(config))).map_err(|_| {
            LoadError::Decoder {
                step: "load the acoustic model",
            }
        })?;
        *log_silenced = true;
        drop(log_silenced);
        let mut model = Self {
            decoder,
            language: lang,
            thresholds: Thresholds::default(),
        };
        let grammar = |_| LoadError::Decoder {
            step: "compile a grammar",
        };
        model
            .decoder
            .set_jsgf_string(YES, &Language::phrase_grammar(YES, lang.yes))
            .map_err(grammar)?;
        model
            .decoder
            .set_jsgf_string(NOT_YES, &Language::phrase_grammar(NOT_YES, &lang.not_yes()))
            .map_err(grammar)?;
        model
            .decoder
            .set_jsgf_string(PHONES, &lang.phone_loop_grammar())
            .map_err(grammar)?;
        Ok(model)
    }

    /// The language code of the grammar.
    pub fn language(&self) -> &'static str {
        self.language.code
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Replaces the thresholds (the defaults are measured; see the crate docs).
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = thresholds;
    }

    /// Recognises one utterance: `Some` only for an accepted yes or no.
    pub fn recognise(&mut self, utterance: &Utterance) -> Result<Option<Answer>, DecodeError> {
        let scores = self.score(&utterance.audio)?;
        Ok(scores
            .decide(&self.thresholds)
            .map(|(decision, phrase, confidence, margin)| Answer {
                decision,
                phrase,
                confidence,
                margin,
                span: utterance.span,
            }))
    }

    /// Runs the three searches over 16 kHz audio and returns their scores.
    pub fn score(&mut self, audio: &[i16]) -> Result<Scores, DecodeError> {
        let lang = self.language;
        let yes = self.search(YES, audio)?;
        let no = self.search(NOT_YES, audio)?;
        let phones = self.search(PHONES, audio)?;
        // A phrase grammar's result counts only when it is one whole phrase:
        // pocketsphinx returns a partial path when none reached the end.
        let phrase = |(hyp, score): (String, i32)| {
            let decision = if lang.yes.contains(&hyp.as_str()) {
                Some(Decision::Yes)
            } else if lang.no.contains(&hyp.as_str()) {
                Some(Decision::No)
            } else if lang.is_non_answer(&hyp) {
                None
            } else {
                return None;
            };
            Some(PhraseScore {
                phrase: hyp,
                decision,
                score,
            })
        };
        Ok(Scores {
            frames: u32::try_from(phones.1).unwrap_or(0),
            yes: yes
                .0
                .and_then(phrase)
                .filter(|p| p.decision == Some(Decision::Yes)),
            not_yes: no
                .0
                .and_then(phrase)
                .filter(|p| p.decision != Some(Decision::Yes)),
            phones: phones.0.filter(|(h, _)| !h.is_empty()).map(|(_, s)| s),
        })
    }

    /// One search over the whole utterance: its hypothesis and the frame count.
    #[allow(clippy::type_complexity)]
    fn search(
        &mut self,
        name: &'static str,
        audio: &[i16],
    ) -> Result<(Option<(String, i32)>, i32), DecodeError> {
        let fail = |step| move |_| DecodeError::Decoder { step };
        self.decoder
            .set_search(name)
            .map_err(fail("switch search"))?;
        self.decoder
            .start_utt(None)
            .map_err(fail("start an utterance"))?;
        self.decoder
            .process_raw(audio, false, true)
            .map_err(fail("process audio"))?;
        self.decoder.end_utt().map_err(fail("end an utterance"))?;
        let hyp = self
            .decoder
            .get_hyp()
            .map(|(hyp, _, score)| (hyp.trim().to_owned(), score))
            .filter(|(hyp, _)| !hyp.is_empty());
        Ok((hyp, self.decoder.get_n_frames()))
    }
}

fn temp_file(contents: &str) -> Result<tempfile::NamedTempFile, LoadError> {
    let mut file = tempfile::NamedTempFile::new().map_err(LoadError::TempFile)?;
    file.write_all(contents.as_bytes())
        .map_err(LoadError::TempFile)?;
    file.flush().map_err(LoadError::TempFile)?;
    Ok(file)
}

fn utf8(path: &Path) -> Result<&str, LoadError> {
    path.to_str().ok_or_else(|| LoadError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrase(p: &str, score: i32) -> Option<PhraseScore> {
        let decision = match p {
            "yes" | "i agree" => Some(Decision::Yes),
            "i see" => None,
            _ => Some(Decision::No),
        };
        Some(PhraseScore {
            phrase: p.to_owned(),
            decision,
            score,
        })
    }

    /// Scores over 100 frames; 10 units per frame is about 1.02 nats per frame.
    fn scores(
        yes: Option<PhraseScore>,
        not_yes: Option<PhraseScore>,
        phones: Option<i32>,
    ) -> Scores {
        Scores {
            frames: 100,
            yes,
            not_yes,
            phones,
        }
    }

    #[test]
    fn clear_yes_is_accepted() {
        let s = scores(phrase("yes", -3000), phrase("no", -6000), Some(-3200));
        let (d, p, c, m) = s.decide(&Thresholds::default()).expect("accepted");
        assert_eq!((d, p.as_str()), (Decision::Yes, "yes"));
        assert!((c - 0.2048).abs() < 1e-3, "{c}");
        assert!(m.is_some_and(|m| (m - 3.072).abs() < 1e-3), "{m:?}");
    }

    #[test]
    fn far_below_the_phone_loop_is_rejected() {
        // 20 units (about 2 nats) per frame worse than free phones.
        let s = scores(phrase("i agree", -5000), phrase("no", -9000), Some(-3000));
        assert_eq!(s.decide(&Thresholds::default()), None);
    }

    #[test]
    fn yes_barely_ahead_of_no_is_rejected() {
        let s = scores(
            phrase("i agree", -3000),
            phrase("i do not agree", -3050),
            Some(-3000),
        );
        assert_eq!(s.decide(&Thresholds::default()), None);
    }

    #[test]
    fn no_path_in_the_other_grammar_leaves_margin_open() {
        let s = scores(None, phrase("no", -3000), Some(-3100));
        let (d, _, _, m) = s.decide(&Thresholds::default()).expect("accepted");
        assert_eq!((d, m), (Decision::No, None));
    }

    #[test]
    fn winning_non_answer_is_no_answer() {
        let s = scores(phrase("yes", -4000), phrase("i see", -3000), Some(-3000));
        assert_eq!(s.decide(&Thresholds::default()), None);
    }

    #[test]
    fn nothing_to_compare_with_is_rejected() {
        assert_eq!(
            scores(phrase("yes", -10), None, None).decide(&Thresholds::default()),
            None
        );
        assert_eq!(
            scores(None, None, Some(-10)).decide(&Thresholds::default()),
            None
        );
        let empty = Scores {
            frames: 0,
            ..scores(phrase("yes", 0), None, Some(0))
        };
        assert_eq!(empty.decide(&Thresholds::default()), None);
    }
}

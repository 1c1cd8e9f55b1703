//! The grammar of each language: which phrases count as an answer, and where
//! Debian installs that language's acoustic model.
//!
//! The phrase lists are short on purpose. Every extra phrase is one more way
//! for unrelated speech to find a match, so a phrase is here only when a
//! person answering "do you agree to be recorded?" plausibly says it. Refusals
//! that share words with an acceptance ("I do not agree", "I don't agree",
//! "I disagree") are listed so that they compete with "I agree" in the
//! decoder instead of being squeezed into it: without them, "I disagree"
//! would only have "I agree" to match.
//!
//! For the same reason a few phrases that sound like a yes but are not an
//! answer ("I see", "I guess", "yesterday") compete with the refusals: when
//! one of them wins, the utterance is not an answer. They are chosen by
//! sound (a rhyme or a shared onset with "yes"), not by what a test said.

/// One language with a grammar.
#[derive(Debug)]
pub(crate) struct Language {
    /// The code callers use (ISO 639-1).
    pub code: &'static str,
    /// The Debian package that installs the model.
    pub package: &'static str,
    /// The model directory as Debian installs it.
    pub default_dir: &'static str,
    /// The acoustic model, relative to the model directory.
    pub acoustic_model: &'static str,
    /// The pronunciation dictionary, relative to the model directory.
    pub dictionary: &'static str,
    /// Phrases that give consent, lower case, words as the dictionary spells them.
    pub yes: &'static [&'static str],
    /// Phrases that refuse consent.
    pub no: &'static [&'static str],
    /// Phrases that sound like an answer and are not one.
    pub other: &'static [&'static str],
    /// The acoustic model's phones: the phone loop that unrelated speech is
    /// measured against (see the crate documentation, "Rejection").
    pub phones: &'static [&'static str],
    /// Phones that stand for "no speech at all" (silence, the model's noise).
    /// Each is a non-answer phrase of its own in the second search: noise is
    /// explained badly by the phrases and by the phone loop alike, and their
    /// ratio alone can look like an answer; against "nothing was said", a
    /// phrase has to show speech.
    pub non_speech: &'static [&'static str],
}

/// The 39 phones of the CMU dictionary, which the Debian `en-us` model uses
/// (silence is a filler, not a phone here).
const CMU_PHONES: &[&str] = &[
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
];

pub(crate) const LANGUAGES: &[Language] = &[Language {
    code: "en",
    package: "pocketsphinx-en-us",
    default_dir: "/usr/share/pocketsphinx/model/en-us",
    acoustic_model: "en-us",
    dictionary: "cmudict-en-us.dict",
    yes: &["yes", "yes i agree", "i agree"],
    no: &[
        "no",
        "no thanks",
        "no thank you",
        "i do not agree",
        "i don't agree",
        "no i do not agree",
        "i disagree",
    ],
    other: &["i see", "i guess", "yesterday"],
    phones: CMU_PHONES,
    non_speech: &["SIL", "+NSN+"],
}];

/// The codes of the languages that have a grammar.
pub(crate) const CODES: &[&str] = &["en"];

/// The language for a code such as `en` or `en-GB` (the region is ignored:
/// one grammar serves every English).
pub(crate) fn find(code: &str) -> Option<&'static Language> {
    let primary = code.split(['-', '_']).next().unwrap_or(code);
    LANGUAGES
        .iter()
        .find(|l| l.code.eq_ignore_ascii_case(primary))
}

impl Language {
    /// The phrases the second search accepts: refusals, non-answers, and
    /// one phone word per non-speech phone.
    pub fn not_yes(&self) -> Vec<String> {
        self.no
            .iter()
            .chain(self.other)
            .map(|p| (*p).to_owned())
            .chain(self.non_speech.iter().map(|p| Self::phone_word(p)))
            .collect()
    }

    /// Whether `phrase` is a non-answer of the second search.
    pub fn is_non_answer(&self, phrase: &str) -> bool {
        self.other.contains(&phrase)
            || self
                .non_speech
                .iter()
                .any(|p| Self::phone_word(p) == phrase)
    }

    /// Every word the phrases use, each once.
    pub fn words(&self) -> Vec<&'static str> {
        let mut words: Vec<&str> = self
            .yes
            .iter()
            .chain(self.no)
            .chain(self.other)
            .flat_map(|p| p.split_whitespace())
            .collect();
        words.sort_unstable();
        words.dedup();
        words
    }

    /// The dictionary word standing for one phone in the phone loop.
    pub fn phone_word(phone: &str) -> String {
        let name: String = phone
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        format!("ph_{name}")
    }

    /// A JSGF grammar that accepts exactly one of `phrases`.
    pub fn phrase_grammar<S: AsRef<str>>(name: &str, phrases: &[S]) -> String {
        let phrases: Vec<&str> = phrases.iter().map(AsRef::as_ref).collect();
        format!(
            "#JSGF V1.0;\ngrammar {name};\npublic <{name}> = {};\n",
            phrases.join(" | ")
        )
    }

    /// A JSGF grammar that accepts any sequence of the model's phones.
    pub fn phone_loop_grammar(&self) -> String {
        let alternatives: Vec<String> = self.phones.iter().map(|p| Self::phone_word(p)).collect();
        format!(
            "#JSGF V1.0;\ngrammar phones;\npublic <phones> = <phone>+;\n<phone> = {};\n",
            alternatives.join(" | ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_list_every_language() {
        let codes: Vec<&str> = LANGUAGES.iter().map(|l| l.code).collect();
        assert_eq!(codes, CODES);
    }

    #[test]
    fn region_is_ignored_and_unknown_languages_have_none() {
        assert_eq!(find("en").map(|l| l.code), Some("en"));
        assert_eq!(find("en-GB").map(|l| l.code), Some("en"));
        assert_eq!(find("EN_us").map(|l| l.code), Some("en"));
        assert!(find("de").is_none());
        assert!(find("").is_none());
    }

    #[test]
    fn no_phrase_is_both_yes_and_no() {
        for l in LANGUAGES {
            for y in l.yes {
                assert!(!l.no.contains(y), "{y} is in both lists of {}", l.code);
                assert!(!l.other.contains(y), "{y} is in both lists of {}", l.code);
            }
            for n in l.no {
                assert!(!l.other.contains(n), "{n} is in both lists of {}", l.code);
            }
        }
    }
}

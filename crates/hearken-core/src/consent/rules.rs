//! Consent rules as data: parse and validate the rules file, resolve a
//! location to a jurisdiction, apply the company policy, and decide a call's
//! mode and gate scope.
//!
//! Everything here is pure: [`Rules::parse`] takes the file's text, the shell
//! reads the file. [`Rules::builtin`] is the copy shipped in
//! `consent/rules.yaml`.
//!
//! # Participants
//!
//! One m-line is one participant for consent: one location, one consent, one
//! DTMF answer. An m-line that carries several people (a room system, a mixed
//! phone bridge) is marked [`ParticipantInput::mixed`] and treated as the
//! strictest of the people it may carry: its mode is at least its location's
//! (the strictest medium when none is given), and the call gets the call-wide
//! (all-party) gate, since the people behind it cannot each consent.
//!
//! # Resolution
//!
//! A location resolves along the rules' `resolution_order` (shipped:
//! subdivision, country, group, default_unknown): `US-CA` has its own entry;
//! `AT` has no entry and falls to its group `EEA`; anything else (or no
//! location at all) gets `default_unknown`, which the shipped file sets to
//! `explicit`: unknown facts fail closed.
//!
//! Subdivisions, decided from the file's data alone:
//!
//! - A country *varies by subdivision* when the file has at least one entry
//!   for a subdivision of it (shipped: `US`, `AU`).
//! - A subdivision with an entry never weakens its country's entry: its
//!   legal floor is `max(subdivision floor, country floor)` (for the same
//!   medium), it is all-party when either is, and it carries the
//!   requirements of both. So `AU-VIC` (notify in the file) resolves at
//!   `AU`'s floor, `notify_and_allow_opt_out`.
//! - A country that varies by subdivision, given without a subdivision or
//!   with one the file has no entry for (`US`, `AU`, `US-ZZ`), could be any
//!   of its subdivisions: it resolves to its country's entry, raised to the
//!   unknown-location mode (both floor and mode: the strictest of the two).
//!   Category and requirements are the country's.
//! - A country that does not vary (`GB`, `DE`, `CA`) resolves to its entry
//!   whatever subdivision is given.
//!
//! The unknown-location mode is the rules' `default_unknown`, unless the
//! company's [`Policy::unknown_location_mode`] replaces it (any mode, even a
//! lower one; [`Rules::unknown_location_mode`] says which applies).
//!
//! # Media
//!
//! Some entries differ by medium (`legal_floor_by_media`,
//! `default_mode_by_media`). A participant's medium is
//! [`ParticipantInput::media`]; when not given it is [`DEFAULT_MEDIA`]
//! (phone: Hearken's calls are audio calls over a network), or every medium
//! (the strictest) for a mixed participant. The recorder is resolved for
//! the default medium.
//!
//! # Policy
//!
//! Per participant: `m = overrides[code] ?? default_mode_by_media[media] ??
//! default_mode`, then `mode = max(m, floor, policy.min_mode)` where `floor`
//! is the resolved legal floor above. The company can raise a mode, never
//! lower it below the legal floor. The call's mode is the strictest of every
//! participant and the recorder.
//!
//! # Requirements
//!
//! An entry's `requirements` are obligations beyond the mode; the code
//! implements each one it accepts ([`Requirement`]), and an unknown one is a
//! load error. `announcement_in_recording` (US-WA, US-CT) surfaces as
//! [`CallDecision::announcement_in_recording`].
//!
//! The file has no feature escalations (vendor reuse, voiceprints, lawful
//! basis): their conditions are not facts the server knows, so the schema
//! refuses them rather than parse and ignore them (see the file's
//! `decision_model` comments).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

// YAML crate: `serde_norway`. `serde_yaml` is archived (deprecated by its
// author in March 2024). Of its forks, `serde_norway` is the maintained one
// that most projects moved to (releases in 2024-2025, same API and error
// messages with a field path and line, MIT/Apache-2.0); `serde_yaml_ng`'s last
// release is from May 2024. It reads YAML 1.2 (a bare `NO` stays a string),
// but the shipped file quotes country codes anyway for YAML 1.1 tools.

/// The shipped rules file, built into the binary.
const BUILTIN_RULES: &str = include_str!("../../../../consent/rules.yaml");

/// How deep a rules file may nest flow collections (`{` and `[`). The YAML
/// scanner's work grows with the square of that depth: 16 KB of `{` took
/// 0.5 s to be refused, 32 KB of fuzzed text 1.8 s. The shipped file nests
/// two deep.
const MAX_FLOW_DEPTH: usize = 32;

/// Refuses a file that opens more than [`MAX_FLOW_DEPTH`] flow collections
/// at once, before the YAML parser sees it. Brackets are counted outside
/// comments and quoted scalars; one inside a plain or block scalar counts
/// too, which only matters to a file with more than 32 of them open.
fn check_flow_depth(yaml: &str) -> Result<(), RulesError> {
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut quote: Option<char> = None;
    let mut comment = false;
    // What came before: a quote or `#` starts something only at the start
    // of a token (`don't` is a plain scalar; `a#b` is not a comment).
    let mut previous = ' ';
    let mut chars = yaml.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            comment = false;
        } else if comment {
        } else if let Some(q) = quote {
            if c == '\\' && q == '"' {
                if chars.next() == Some('\n') {
                    line += 1;
                }
            } else if c == q {
                quote = None;
            }
        } else {
            let token_start =
                previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':' | '-');
            match c {
                '"' | '\'' if token_start => quote = Some(c),
                '#' if previous.is_whitespace() => comment = true,
                '{' | '[' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(RulesError::Syntax(format!(
                            "line {line}: flow collections ({{ or [) nested more than {MAX_FLOW_DEPTH} deep"
                        )));
                    }
                }
                '}' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        previous = c;
    }
    Ok(())
}

/// The name of the resolution step (and of the matched entry) for locations
/// that no jurisdiction covers.
pub const DEFAULT_UNKNOWN: &str = "default_unknown";

/// How much a participant must be told or asked before capture, weakest
/// first; `Ord` follows strictness.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// Record without an announcement.
    #[default]
    None,
    /// Announce the recording (bot name, spoken notice at start and resume).
    Notify,
    /// Announce, say how to object; staying on the call is implied consent.
    NotifyAndAllowOptOut,
    /// Capture a participant only after an explicit yes (DTMF, API, verbal).
    Explicit,
}

/// The mode names, weakest first, as written in rules files and configs.
const MODE_NAMES: &str = "none, notify, notify_and_allow_opt_out, explicit";

impl ConsentMode {
    /// Every mode, weakest first.
    pub const ALL: [ConsentMode; 4] = [
        ConsentMode::None,
        ConsentMode::Notify,
        ConsentMode::NotifyAndAllowOptOut,
        ConsentMode::Explicit,
    ];

    /// The name used in rules files, configs and JSON (`notify_and_allow_opt_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMode::None => "none",
            ConsentMode::Notify => "notify",
            ConsentMode::NotifyAndAllowOptOut => "notify_and_allow_opt_out",
            ConsentMode::Explicit => "explicit",
        }
    }
}

impl fmt::Display for ConsentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of the four modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode \"{found}\" (expected one of {MODE_NAMES})")]
#[non_exhaustive]
pub struct ParseModeError {
    /// The text that was given.
    pub found: String,
}

impl FromStr for ConsentMode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConsentMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseModeError {
                found: s.to_owned(),
            })
    }
}

/// What the law of a jurisdiction requires of the parties to a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// One party's consent is enough (the recorder can be that party).
    OneParty,
    /// Every party must consent: the gate becomes call-wide.
    AllParty,
    /// Depends on the medium, the statute or unsettled case law; see the notes.
    Nuanced,
}

impl Category {
    /// The name used in rules files (`all_party`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::OneParty => "one_party",
            Category::AllParty => "all_party",
            Category::Nuanced => "nuanced",
        }
    }

    /// Plain words for explanations (`all-party`).
    pub fn as_words(self) -> &'static str {
        match self {
            Category::OneParty => "one-party",
            Category::AllParty => "all-party",
            Category::Nuanced => "nuanced",
        }
    }
}

/// How sure the research is about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Primary or several agreeing sources.
    High,
    /// Secondary sources, not individually re-verified.
    Medium,
    /// Weak, conflicting or unresolved sources.
    Low,
}

/// The medium of a participant's conversation, for entries whose rule
/// varies by it (`legal_floor_by_media`, `default_mode_by_media`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Media {
    /// A telephone call (any audio call carried over a network).
    Phone,
    /// A video conference.
    Video,
    /// Speakers in one room, captured by a room device.
    InPersonRoom,
}

/// The medium of a participant the caller says nothing about. Hearken's
/// calls are audio calls carried over a network (WebRTC, SIP bridges): in the
/// terms of the statutes behind the by-media entries (CT 52-570d
/// "telephonic", NV wire communications, OR telecommunications) a phone call.
pub const DEFAULT_MEDIA: Media = Media::Phone;

impl Media {
    /// Every medium, in the order the rules file lists them.
    pub const ALL: [Media; 3] = [Media::Phone, Media::Video, Media::InPersonRoom];

    /// The name used in rules files and JSON (`in_person_room`).
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Phone => "phone",
            Media::Video => "video",
            Media::InPersonRoom => "in_person_room",
        }
    }
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An obligation an entry adds to its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Requirement {
    /// The announcement must itself be in the recording (US-WA RCW
    /// 9.73.030(3); US-CT 52-570d accepts a recorded notice at the start).
    AnnouncementInRecording,
}

/// The requirement names, as written in rules files.
const REQUIREMENT_NAMES: &str = "announcement_in_recording";

impl Requirement {
    /// Every requirement the code implements.
    pub const ALL: [Requirement; 1] = [Requirement::AnnouncementInRecording];

    /// The name used in rules files and JSON (`announcement_in_recording`).
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::AnnouncementInRecording => "announcement_in_recording",
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the rules file: a country, a subdivision or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Jurisdiction {
    /// Its key: `US`, `US-CA`, `EEA`.
    pub code: String,
    /// Human name (`California`).
    pub name: String,
    /// One-party, all-party or nuanced.
    pub category: Category,
    /// The least the sources support for a business deploying a bot.
    pub legal_floor: ConsentMode,
    /// The recommended shipped mode (never below the legal floor).
    pub default_mode: ConsentMode,
    /// What the sources say, in prose; flags `DISPUTED`/`UNVERIFIED`/`UNRESOLVED`.
    pub notes: String,
    /// URLs of the sources (at least one).
    pub sources: Vec<String>,
    /// How sure the research is.
    pub confidence: Confidence,
    /// Legal floor by medium, where it differs from `legal_floor`.
    pub legal_floor_by_media: BTreeMap<Media, ConsentMode>,
    /// Recommended mode by medium, where it differs from `default_mode`.
    pub default_mode_by_media: BTreeMap<Media, ConsentMode>,
    /// Extra obligations (`announcement_in_recording`).
    pub requirements: BTreeSet<Requirement>,
    /// The data-protection regime businesses also answer to (`GDPR`);
    /// informational.
    pub business_overlay: Option<String>,
    /// Longest retention the regulator accepts, in days; informational.
    pub retention_max_days: Option<u32>,
    /// Whether consent on file (an employee policy) may stand in for a
    /// notice; informational (Hearken takes no consent on file).
    pub prior_consent_on_file_allowed: Option<bool>,
}

impl Jurisdiction {
    /// The legal floor for a medium: `legal_floor_by_media[media] ?? legal_floor`.
    pub fn legal_floor_for(&self, media: Media) -> ConsentMode {
        self.legal_floor_by_media
            .get(&media)
            .copied()
            .unwrap_or(self.legal_floor)
    }

    /// The recommended mode for a medium:
    /// `default_mode_by_media[media] ?? default_mode`.
    pub fn default_mode_for(&self, media: Media) -> ConsentMode {
        self.default_mode_by_media
            .get(&media)
            .copied()
            .unwrap_or(self.default_mode)
    }

    /// Whether its rule differs by medium.
    pub fn varies_by_media(&self) -> bool {
        !(self.legal_floor_by_media.is_empty() && self.default_mode_by_media.is_empty())
    }
}

/// Why a rules file was refused. Every message names the place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// Not YAML, or a shape the schema does not allow (missing or unknown
    /// field, wrong type, a field given twice); the message has the field
    /// path and the line.
    #[error("{0}")]
    Syntax(String),
    /// A required text field is empty.
    #[error("{place}: must not be empty")]
    Empty {
        /// Where, e.g. `version`.
        place: String,
    },
    /// A mode name that is not one of the four modes.
    #[error("{place}: unknown mode \"{found}\" (expected one of {MODE_NAMES})")]
    UnknownMode {
        /// Where, e.g. `jurisdictions.US-CA.legal_floor`.
        place: String,
        /// The text found there.
        found: String,
    },
    /// A value outside the fixed set a field allows (category, confidence,
    /// medium, resolution step).
    #[error("{place}: unknown value \"{found}\" (expected one of {expected})")]
    InvalidValue {
        /// Where, e.g. `jurisdictions.US-CA.category`.
        place: String,
        /// The text found there.
        found: String,
        /// The allowed values.
        expected: &'static str,
    },
    /// `modes.order` differs from the order built into Hearken.
    #[error("modes.order: expected [{MODE_NAMES}] (the order Hearken implements), found [{}]", found.join(", "))]
    ModeOrder {
        /// The order found in the file.
        found: Vec<String>,
    },
    /// `decision_model.resolution_order` is not a usable order.
    #[error("decision_model.resolution_order: {reason}")]
    ResolutionOrder {
        /// What is wrong with it.
        reason: String,
    },
    /// The same key twice in one mapping.
    #[error("{place}: duplicate key \"{key}\"")]
    DuplicateKey {
        /// The mapping, e.g. `jurisdictions`.
        place: String,
        /// The repeated key.
        key: String,
    },
    /// A jurisdiction key that is neither ISO 3166-1 alpha-2, ISO 3166-2
    /// shaped, nor a group defined under `groups`.
    #[error(
        "jurisdictions.{code}: not an ISO 3166-1 alpha-2 code (\"US\"), an ISO 3166-2 code (\"US-CA\") or a group named under groups"
    )]
    BadJurisdictionCode {
        /// The key.
        code: String,
    },
    /// A group name that could be mistaken for a location code.
    #[error(
        "groups.{group}: a group name must be 3 or more capital letters, digits or '_', starting with a letter (\"EEA\")"
    )]
    BadGroupName {
        /// The group's key.
        group: String,
    },
    /// A group member that is not a two-letter ISO 3166-1 country code.
    #[error("{place}: \"{member}\" is not a 2-letter ISO 3166-1 country code (like \"DE\")")]
    BadGroupMember {
        /// Where, e.g. `groups.EEA[3]`.
        place: String,
        /// The member found.
        member: String,
    },
    /// A country listed twice, in one group or in two.
    #[error("{place}: {member} is already a member of {first}; a country belongs to one group")]
    DuplicateGroupMember {
        /// Where the second listing is, e.g. `groups.EEA[30]`.
        place: String,
        /// The country.
        member: String,
        /// The group that lists it first.
        first: String,
    },
    /// A group with no jurisdiction entry of the same name.
    #[error("groups.{group}: no jurisdictions.{group} entry gives this group's rule")]
    GroupWithoutEntry {
        /// The group.
        group: String,
    },
    /// A recommended mode below the legal floor.
    #[error("{place}: {default_mode} is below the legal floor {legal_floor}")]
    DefaultBelowFloor {
        /// Where, e.g. `jurisdictions.US-CA.default_mode`.
        place: String,
        /// The recommended mode.
        default_mode: ConsentMode,
        /// The legal floor it falls below.
        legal_floor: ConsentMode,
    },
    /// An entry without sources.
    #[error("{place}: no sources; every entry needs at least one source URL")]
    MissingSources {
        /// Where, e.g. `jurisdictions.US-CA.source`.
        place: String,
    },
    /// A source that is not an http(s) URL.
    #[error("{place}: \"{found}\" is not an http:// or https:// URL")]
    BadSource {
        /// Where, e.g. `jurisdictions.US-CA.source[1]`.
        place: String,
        /// The text found.
        found: String,
    },
    /// A requirement the code does not implement: a rule Hearken would
    /// silently not follow.
    #[error("{place}: unknown requirement \"{found}\" (Hearken implements {REQUIREMENT_NAMES})")]
    UnknownRequirement {
        /// Where, e.g. `jurisdictions.US-WA.requirements[0]`.
        place: String,
        /// The text found there.
        found: String,
    },
}

/// Why a location was refused (used at the edges that take locations from
/// outside; [`Rules::resolve`] itself accepts anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// The country is not a two-letter ISO 3166-1 code.
    #[error("\"{found}\" is not a 2-letter ISO 3166-1 country code (like \"US\" or \"DE\")")]
    Country {
        /// The text given.
        found: String,
    },
    /// The subdivision is not ISO 3166-2 shaped.
    #[error("\"{found}\" is not an ISO 3166-2 subdivision code (like \"US-CA\" or \"CA\")")]
    Subdivision {
        /// The text given.
        found: String,
    },
    /// The subdivision belongs to another country.
    #[error("subdivision {subdivision} is not in country {country}")]
    SubdivisionOutsideCountry {
        /// The subdivision, normalized.
        subdivision: String,
        /// The country, normalized.
        country: String,
    },
}

/// Where a participant (or the recorder) is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country (`US`); case does not matter.
    pub country: String,
    /// ISO 3166-2 subdivision, as `US-CA` or just `CA` (then `country` gives
    /// the prefix); case does not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
}

/// A location with codes made canonical, ready to look up.
struct Normalized {
    /// Upper-case two-letter country, if the input had a valid one.
    country: Option<String>,
    /// Canonical `CC-SUB` subdivision inside `country`, if any.
    subdivision: Option<String>,
    /// What was given but could not be used, in plain words.
    ignored: Option<String>,
}

impl Location {
    /// A location from one code: `US` (a country) or `US-CA` (a subdivision
    /// and its country); case does not matter.
    pub fn from_code(code: &str) -> Result<Location, LocationError> {
        let code = code.trim().to_ascii_uppercase();
        let location = match code.split_once('-') {
            Some((country, _)) => Location {
                country: country.to_owned(),
                subdivision: Some(code.clone()),
            },
            None => Location {
                country: code.clone(),
                subdivision: None,
            },
        };
        location.validate()?;
        Ok(location)
    }

    /// Checks the codes' shapes (not whether the rules know them).
    pub fn validate(&self) -> Result<(), LocationError> {
        let country = self.country.trim().to_ascii_uppercase();
        if !is_alpha2(&country) {
            return Err(LocationError::Country {
                found: self.country.clone(),
            });
        }
        let Some(given) = self.subdivision.as_deref() else {
            return Ok(());
        };
        let sub = given.trim().to_ascii_uppercase();
        if sub.is_empty() {
            return Ok(());
        }
        let full = if sub.contains('-') {
            sub
        } else {
            format!("{country}-{sub}")
        };
        if !is_subdivision(&full) {
            return Err(LocationError::Subdivision {
                found: given.to_owned(),
            });
        }
        if !full.starts_with(&format!("{country}-")) {
            return Err(LocationError::SubdivisionOutsideCountry {
                subdivision: full,
                country,
            });
        }
        Ok(())
    }

    /// Canonical codes; never fails: what cannot be used is noted and left out.
    fn normalize(&self) -> Normalized {
        let mut country = self.country.trim().to_ascii_uppercase();
        let sub = self
            .subdivision
            .as_deref()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty());
        let mut subdivision = None;
        let mut ignored = None;
        if let Some(sub) = sub {
            let full = if sub.contains('-') {
                sub
            } else {
                format!("{country}-{sub}")
            };
            if country.is_empty()
                && let Some((prefix, _)) = full.split_once('-')
                && is_alpha2(prefix)
            {
                country = prefix.to_owned();
            }
            if is_subdivision(&full) && full.starts_with(&format!("{country}-")) {
                subdivision = Some(full);
            } else {
                ignored = Some(format!(
                    "subdivision \"{full}\" ignored (not a subdivision of \"{country}\")"
                ));
            }
        }
        let country = if is_alpha2(&country) {
            Some(country)
        } else {
            if !country.is_empty() {
                let note = format!("country \"{country}\" is not an ISO 3166-1 alpha-2 code");
                ignored = Some(match ignored {
                    Some(earlier) => format!("{earlier}; {note}"),
                    None => note,
                });
            }
            None
        };
        Normalized {
            country,
            subdivision,
            ignored,
        }
    }
}

/// The jurisdiction a location resolved to, and what it requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The entry that applies: `US-CA`, `DE`, `EEA` or `default_unknown`.
    pub matched: String,
    /// The mode for this participant (after company policy, where applied).
    pub mode: ConsentMode,
    /// The least the law requires (for `default_unknown`: its mode).
    pub legal_floor: ConsentMode,
    /// Whether the entry (or its country's, for a subdivision) is all-party:
    /// every party must consent.
    pub all_party: bool,
    /// Obligations beyond the mode, of the entry and (for a subdivision) its
    /// country's entry.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub requirements: BTreeSet<Requirement>,
    /// Plain words: `US-CA (California): all-party; legal floor notify_and_allow_opt_out`.
    pub why: String,
}

/// The company's recording policy. It can raise modes, never lower them
/// below a legal floor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// No participant's mode is below this.
    pub min_mode: ConsentMode,
    /// Mode per code, replacing the recommended `default_mode` (still never
    /// below the legal floor). Keys are codes as in the rules file (`US`,
    /// `US-CA`, `EEA`, `default_unknown`); a participant takes the override
    /// of its most specific code (subdivision, country, group), so `US`
    /// covers every US state without its own override.
    pub overrides: BTreeMap<String, ConsentMode>,
    /// The mode wherever the rules' `default_unknown` would apply (no
    /// location, a location no entry covers, the unknown part of a country
    /// whose subdivisions differ), replacing it. Any mode, even below the
    /// rules' default: a company that knows where its participants are takes
    /// responsibility for it. Known entries' legal floors still apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_location_mode: Option<ConsentMode>,
}

/// Where the mode for unknown locations comes from.
pub const UNKNOWN_MODE_FROM_RULES: &str = "rules";
/// Where the mode for unknown locations comes from: the company's
/// [`Policy::unknown_location_mode`].
pub const UNKNOWN_MODE_FROM_POLICY: &str = "policy";

/// One participant, as the decision needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInput {
    /// The participant's id (for explanations).
    pub id: String,
    /// Where the participant is; `None` counts as `default_unknown`.
    pub location: Option<Location>,
    /// An employee of the company that records. Reported; it does not lower
    /// the mode (the policy has no internal exemption).
    pub internal: bool,
    /// The participant's medium, for entries whose rule varies by it; `None`
    /// is [`DEFAULT_MEDIA`] (phone), or every medium for a mixed participant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// One m-line carrying several people (a room system, a mixed phone
    /// bridge). It is one participant for consent, treated as the strictest
    /// of the people it may carry: the strictest medium when none is given,
    /// and the call gets the call-wide (all-party) gate.
    #[serde(default)]
    pub mixed: bool,
}

/// Which consents the gate waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateScope {
    /// All-party: anyone present and not yet consented pauses capture of
    /// everyone.
    CallWide,
    /// Each participant's own consent gates only that participant's audio.
    PerParticipant,
}

impl GateScope {
    /// The name used in JSON (`call_wide`).
    pub fn as_str(self) -> &'static str {
        match self {
            GateScope::CallWide => "call_wide",
            GateScope::PerParticipant => "per_participant",
        }
    }
}

impl fmt::Display for GateScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The consent mode of a call, its gate scope and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallDecision {
    /// The strictest mode of every participant and the recorder.
    pub mode: ConsentMode,
    /// Call-wide when any resolved jurisdiction is all-party, or a
    /// participant is mixed, and the mode is above `none`; else per
    /// participant.
    pub scope: GateScope,
    /// The announcement must itself be in the recording: a participant's
    /// resolved entry, or the recorder's, requires it (US-WA, US-CT).
    pub announcement_in_recording: bool,
    /// The mode for locations the rules do not know.
    pub unknown_location_mode: ConsentMode,
    /// Where that mode comes from: [`UNKNOWN_MODE_FROM_RULES`] or
    /// [`UNKNOWN_MODE_FROM_POLICY`].
    pub unknown_location_mode_from: &'static str,
    /// Each participant's id and resolution (with company policy applied), in
    /// input order. In JSON: a list of objects with `id` and the resolution's
    /// fields.
    #[serde(rename = "participants", serialize_with = "serialize_participants")]
    pub per_participant: Vec<(String, Resolution)>,
    /// The recorder's own location, resolved like a participant.
    pub recorder: Resolution,
    /// Plain words: which participant set the mode, why the scope, policy.
    pub reasons: Vec<String>,
}

fn serialize_participants<S: Serializer>(
    rows: &[(String, Resolution)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        #[serde(flatten)]
        resolution: &'a Resolution,
    }
    serializer.collect_seq(rows.iter().map(|(id, resolution)| Row { id, resolution }))
}

/// One step of the resolution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Subdivision,
    Country,
    Group,
    DefaultUnknown,
}

const STEP_NAMES: &str = "subdivision, country, group, default_unknown";

impl Step {
    fn parse(s: &str) -> Option<Step> {
        match s {
            "subdivision" => Some(Step::Subdivision),
            "country" => Some(Step::Country),
            "group" => Some(Step::Group),
            DEFAULT_UNKNOWN => Some(Step::DefaultUnknown),
            _ => None,
        }
    }
}

/// Validated consent rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    version: String,
    schema_version: String,
    disclaimer: String,
    resolution_order: Vec<Step>,
    default_unknown: ConsentMode,
    low_confidence_location: Option<ConsentMode>,
    /// Group name -> members, in file order.
    groups: BTreeMap<String, Vec<String>>,
    /// Country -> the group that lists it.
    group_of: BTreeMap<String, String>,
    jurisdictions: BTreeMap<String, Jurisdiction>,
    /// Countries with at least one subdivision entry: their rule differs by
    /// subdivision, so the country alone does not say which applies.
    divided: BTreeSet<String>,
}

impl Rules {
    /// Parses and validates a rules file's text. The first problem found, in
    /// file order, is returned with its place.
    pub fn parse(yaml: &str) -> Result<Rules, RulesError> {
        check_flow_depth(yaml)?;
        let raw: RawRules =
            serde_norway::from_str(yaml).map_err(|e| RulesError::Syntax(e.to_string()))?;
        raw.validate()
    }

    /// The rules shipped in `consent/rules.yaml`, built into the binary.
    pub fn builtin() -> Rules {
        // INVARIANT: the shipped file is parsed by a unit test
        // (`builtin_rules_parse`), so a broken file never reaches a build
        // that passed its tests.
        Rules::parse(BUILTIN_RULES).expect("consent/rules.yaml is valid")
    }

    /// The text of the shipped rules file.
    pub fn builtin_text() -> &'static str {
        BUILTIN_RULES
    }

    /// The rules' version (recorded in every call's audit log).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The version of the file's schema.
    pub fn schema_version(&self) -> &str {
        &self.schema_version
    }

    /// The "not legal advice" line, to show wherever a decision is shown.
    pub fn disclaimer(&self) -> &str {
        &self.disclaimer
    }

    /// The mode for locations no entry covers.
    pub fn default_unknown(&self) -> ConsentMode {
        self.default_unknown
    }

    /// The mode for unknown locations under a company policy, and where it
    /// comes from: the policy's [`Policy::unknown_location_mode`] (source
    /// [`UNKNOWN_MODE_FROM_POLICY`]), else the rules' `default_unknown`
    /// ([`UNKNOWN_MODE_FROM_RULES`]).
    pub fn unknown_location_mode(&self, policy: &Policy) -> (ConsentMode, &'static str) {
        match policy.unknown_location_mode {
            Some(mode) => (mode, UNKNOWN_MODE_FROM_POLICY),
            None => (self.default_unknown, UNKNOWN_MODE_FROM_RULES),
        }
    }

    /// Whether the file has entries for subdivisions of `country`: then the
    /// country alone does not say which rule applies.
    pub fn varies_by_subdivision(&self, country: &str) -> bool {
        self.divided.contains(country)
    }

    /// The mode the rules recommend for a location known only with low
    /// confidence (not an input yet), if the file gives one.
    pub fn low_confidence_location(&self) -> Option<ConsentMode> {
        self.low_confidence_location
    }

    /// The entry for a code exactly as keyed (`US-CA`, `DE`, `EEA`).
    pub fn jurisdiction(&self, code: &str) -> Option<&Jurisdiction> {
        self.jurisdictions.get(code)
    }

    /// Every entry, by code.
    pub fn jurisdictions(&self) -> impl Iterator<Item = &Jurisdiction> {
        self.jurisdictions.values()
    }

    /// How many entries the rules have.
    pub fn jurisdiction_count(&self) -> usize {
        self.jurisdictions.len()
    }

    /// The group a country belongs to (`AT` -> `EEA`), if any.
    pub fn group_of(&self, country: &str) -> Option<&str> {
        self.group_of.get(country).map(String::as_str)
    }

    /// The members of a group, in file order.
    pub fn group_members(&self, group: &str) -> Option<&[String]> {
        self.groups.get(group).map(Vec::as_slice)
    }

    /// Resolves a location along the resolution order, without company
    /// policy, for the default medium ([`DEFAULT_MEDIA`]): `mode` is the
    /// entry's recommended mode. `None`, or a location no entry covers, gives
    /// `default_unknown`.
    pub fn resolve(&self, location: Option<&Location>) -> Resolution {
        let unknown = (self.default_unknown, UNKNOWN_MODE_FROM_RULES);
        self.resolve_with_codes(location, &[DEFAULT_MEDIA], unknown)
            .0
    }

    /// Resolves a location for the default medium and applies the company
    /// policy (see [`Policy`]).
    pub fn resolve_with_policy(&self, policy: &Policy, location: Option<&Location>) -> Resolution {
        let unknown = self.unknown_location_mode(policy);
        let (base, codes) = self.resolve_with_codes(location, &[DEFAULT_MEDIA], unknown);
        apply_policy(policy, base, &codes)
    }

    /// Resolves one participant (location, medium, mixed) and applies the
    /// company policy: what [`decide`] does for each participant.
    pub fn resolve_participant(&self, policy: &Policy, p: &ParticipantInput) -> Resolution {
        let media: &[Media] = match (p.media, p.mixed) {
            (Some(media), _) => &[media][..],
            // Whoever a mixed line carries may be on any medium (a room
            // system's people are in the room): the strictest applies.
            (None, true) => &Media::ALL[..],
            (None, false) => &[DEFAULT_MEDIA][..],
        };
        let unknown = self.unknown_location_mode(policy);
        let (base, codes) = self.resolve_with_codes(p.location.as_ref(), media, unknown);
        let mut resolution = apply_policy(policy, base, &codes);
        if p.mixed {
            resolution.why.push_str(
                "; mixed m-line: one participant for consent that may carry several people, \
                 so the whole call is gated for it",
            );
        }
        resolution
    }

    /// The resolution for `media` (the strictest over them), and the
    /// location's codes from most to least specific (for policy overrides).
    fn resolve_with_codes(
        &self,
        location: Option<&Location>,
        media: &[Media],
        unknown: (ConsentMode, &'static str),
    ) -> (Resolution, Vec<String>) {
        let norm = location.map(Location::normalize);
        let mut codes = Vec::new();
        if let Some(n) = &norm {
            codes.extend(n.subdivision.clone());
            codes.extend(n.country.clone());
            if let Some(group) = n.country.as_deref().and_then(|c| self.group_of(c)) {
                codes.push(group.to_owned());
            }
        }
        let prefix = norm
            .as_ref()
            .and_then(|n| n.ignored.as_deref())
            .map(|s| format!("{s}; "))
            .unwrap_or_default();
        for step in &self.resolution_order {
            let Some(n) = &norm else { break };
            let found = match step {
                Step::Subdivision => n
                    .subdivision
                    .as_deref()
                    .and_then(|s| self.jurisdictions.get(s))
                    .map(|j| {
                        // A subdivision never weakens its country's entry.
                        let country = n.country.as_deref().and_then(|c| self.jurisdictions.get(c));
                        Found::Entry { j, country }
                    }),
                Step::Country => n.country.as_deref().and_then(|c| {
                    let j = self.jurisdictions.get(c)?;
                    let sub = n.subdivision.as_deref();
                    let sub_known = sub.is_some_and(|s| self.jurisdictions.contains_key(s));
                    Some(if self.varies_by_subdivision(c) && !sub_known {
                        Found::UnknownPart { j, sub }
                    } else {
                        Found::FellBack { j, from: sub }
                    })
                }),
                Step::Group => n.country.as_deref().and_then(|c| {
                    self.group_of(c)
                        .and_then(|g| self.jurisdictions.get(g))
                        .map(|j| Found::FellBack { j, from: Some(c) })
                }),
                Step::DefaultUnknown => break,
            };
            if let Some(found) = found {
                return (self.found_resolution(found, media, unknown, &prefix), codes);
            }
        }
        let why = match &norm {
            None => "location unknown".to_owned(),
            Some(n) => match (&n.subdivision, &n.country) {
                (Some(s), _) => format!("no rule for {s}"),
                (None, Some(c)) => format!("no rule for {c}"),
                (None, None) => "location not recognised".to_owned(),
            },
        };
        codes.push(DEFAULT_UNKNOWN.to_owned());
        let (mode, from) = unknown;
        let whose = if from == UNKNOWN_MODE_FROM_POLICY {
            format!(
                "the company's unknown-location mode is {mode} (the rules' default is {})",
                self.default_unknown
            )
        } else {
            format!("the rules require {mode} for locations they do not cover")
        };
        let resolution = Resolution {
            matched: DEFAULT_UNKNOWN.to_owned(),
            mode,
            legal_floor: mode,
            all_party: false,
            requirements: BTreeSet::new(),
            why: format!("{prefix}{DEFAULT_UNKNOWN}: {why}; {whose}"),
        };
        (resolution, codes)
    }

    fn found_resolution(
        &self,
        found: Found<'_>,
        media: &[Media],
        unknown: (ConsentMode, &'static str),
        prefix: &str,
    ) -> Resolution {
        let (j, country, from, unknown_part) = match found {
            Found::Entry { j, country } => (j, country, None, None),
            Found::FellBack { j, from } => (j, None, from, None),
            Found::UnknownPart { j, sub } => (j, None, sub, Some(unknown)),
        };
        // The strictest over the media considered (one, unless mixed).
        let floor_of = |j: &Jurisdiction| {
            media
                .iter()
                .map(|&m| j.legal_floor_for(m))
                .fold(ConsentMode::None, ConsentMode::max)
        };
        let mode_of = |j: &Jurisdiction| {
            media
                .iter()
                .map(|&m| j.default_mode_for(m))
                .fold(ConsentMode::None, ConsentMode::max)
        };
        let own_floor = floor_of(j);
        let mut legal_floor = own_floor;
        let mut mode = mode_of(j);
        let mut all_party = j.category == Category::AllParty;
        let mut requirements = j.requirements.clone();
        let mut why = match from {
            Some(code) => format!(
                "{prefix}{} ({}) for {code} (no entry of its own)",
                j.code, j.name
            ),
            None => format!("{prefix}{} ({})", j.code, j.name),
        };
        why.push_str(&format!(
            ": {}; legal floor {own_floor}",
            j.category.as_words()
        ));
        if j.varies_by_media() {
            let names: Vec<&str> = media.iter().map(|m| m.as_str()).collect();
            let which = if media.len() == 1 {
                names[0].to_owned()
            } else {
                format!("medium unknown, strictest of {}", names.join(", "))
            };
            why.push_str(&format!("; by medium ({which}): recommended {mode}"));
        }
        if let Some(c) = country {
            let country_floor = floor_of(c);
            if country_floor > legal_floor {
                legal_floor = country_floor;
                why.push_str(&format!(
                    "; raised to {}'s legal floor {country_floor} (a subdivision never weakens its country)",
                    c.code
                ));
            }
            if c.category == Category::AllParty && !all_party {
                all_party = true;
                why.push_str(&format!("; all-party under {}'s rule", c.code));
            }
            requirements.extend(c.requirements.iter().copied());
        }
        if let Some((unknown_mode, source)) = unknown_part {
            let what = from.map_or_else(
                || format!("no {} subdivision given", j.code),
                |s| format!("{s} has no entry"),
            );
            let whose = if source == UNKNOWN_MODE_FROM_POLICY {
                "the company's unknown-location mode"
            } else {
                DEFAULT_UNKNOWN
            };
            if unknown_mode > legal_floor || unknown_mode > mode {
                why.push_str(&format!(
                    "; {}'s rules differ by subdivision and {what}: the strictest of {} and \
                     {whose} ({unknown_mode}) applies",
                    j.code, j.code
                ));
            } else {
                why.push_str(&format!(
                    "; {}'s rules differ by subdivision and {what}: {} is at least as strict as \
                     {whose} ({unknown_mode})",
                    j.code, j.code
                ));
            }
            legal_floor = legal_floor.max(unknown_mode);
        }
        if requirements.contains(&Requirement::AnnouncementInRecording) {
            why.push_str("; the announcement must be in the recording");
        }
        mode = mode.max(legal_floor);
        Resolution {
            matched: j.code.clone(),
            mode,
            legal_floor,
            all_party,
            requirements,
            why,
        }
    }
}

/// What a resolution step found.
enum Found<'a> {
    /// The location's own entry (a subdivision: with its country's entry).
    Entry {
        j: &'a Jurisdiction,
        country: Option<&'a Jurisdiction>,
    },
    /// A less specific entry that covers the location (`US` for `DE-BY`
    /// style subdivisions of undivided countries, `EEA` for `AT`).
    FellBack {
        j: &'a Jurisdiction,
        from: Option<&'a str>,
    },
    /// The country's entry, where the file has subdivision entries for the
    /// country but not for this location's subdivision (or none was given).
    UnknownPart {
        j: &'a Jurisdiction,
        sub: Option<&'a str>,
    },
}

/// `mode = max(overrides[code] ?? mode, legal_floor, min_mode)`, with the why.
fn apply_policy(policy: &Policy, base: Resolution, codes: &[String]) -> Resolution {
    let over = codes.iter().find_map(|code| {
        policy
            .overrides
            .iter()
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(code))
            .map(|(_, mode)| (code.as_str(), *mode))
    });
    let chosen = over.map_or(base.mode, |(_, mode)| mode);
    let legal = chosen.max(base.legal_floor);
    let mode = legal.max(policy.min_mode);
    let mut why = base.why;
    if let Some((code, wanted)) = over {
        why.push_str(&format!("; company override for {code}: {wanted}"));
        if wanted < base.legal_floor {
            why.push_str(&format!(" (kept at the legal floor {})", base.legal_floor));
        }
    }
    if policy.min_mode > legal {
        why.push_str(&format!(
            "; raised to the company minimum {}",
            policy.min_mode
        ));
    }
    Resolution { mode, why, ..base }
}

/// Decides a call's consent mode and gate scope: each participant and the
/// recorder resolve to a jurisdiction, the company policy applies to each,
/// the strictest mode wins. Pure and total: any input gives a decision.
pub fn decide(
    rules: &Rules,
    policy: &Policy,
    recorder: Option<&Location>,
    participants: &[ParticipantInput],
) -> CallDecision {
    let per_participant: Vec<(String, Resolution)> = participants
        .iter()
        .map(|p| (p.id.clone(), rules.resolve_participant(policy, p)))
        .collect();
    let recorder = rules.resolve_with_policy(policy, recorder);
    let parties: Vec<(String, &Resolution)> = per_participant
        .iter()
        .map(|(id, r)| (id.clone(), r))
        .chain([("the recorder".to_owned(), &recorder)])
        .collect();
    let mode = parties
        .iter()
        .map(|(_, r)| r.mode)
        .fold(recorder.mode, ConsentMode::max);

    let mut reasons = Vec::new();
    let strictest: Vec<String> = parties
        .iter()
        .filter(|(_, r)| r.mode == mode)
        .map(|(who, r)| describe(who, r))
        .collect();
    let verb = if strictest.len() == 1 {
        "requires"
    } else {
        "require"
    };
    reasons.push(format!("strictest: {} {verb} {mode}", strictest.join(", ")));
    if policy.min_mode > ConsentMode::None {
        reasons.push(format!(
            "company minimum mode {} applies to everyone",
            policy.min_mode
        ));
    }

    let all_party: Vec<String> = parties
        .iter()
        .filter(|(_, r)| r.all_party)
        .map(|(who, r)| format!("{who} in {}", r.matched))
        .collect();
    let mixed: Vec<&str> = participants
        .iter()
        .filter(|p| p.mixed)
        .map(|p| p.id.as_str())
        .collect();
    let scope = if (!all_party.is_empty() || !mixed.is_empty()) && mode > ConsentMode::None {
        if !all_party.is_empty() {
            reasons.push(format!(
                "call-wide gate: all-party rules apply ({}); anyone present and not yet consented pauses capture of everyone",
                all_party.join(", ")
            ));
        }
        if !mixed.is_empty() {
            reasons.push(format!(
                "call-wide gate: mixed m-lines ({}) may carry several people who cannot each consent, so they are treated as all-party",
                mixed.join(", ")
            ));
        }
        GateScope::CallWide
    } else if all_party.is_empty() && mixed.is_empty() {
        reasons.push(
            "per-participant gate: no participant and not the recorder is in an all-party jurisdiction"
                .to_owned(),
        );
        GateScope::PerParticipant
    } else {
        reasons.push("per-participant gate: the mode is none, nothing to wait for".to_owned());
        GateScope::PerParticipant
    };

    let announcing: Vec<String> = parties
        .iter()
        .filter(|(_, r)| {
            r.requirements
                .contains(&Requirement::AnnouncementInRecording)
        })
        .map(|(who, r)| format!("{who} in {}", r.matched))
        .collect();
    let announcement_in_recording = !announcing.is_empty();
    if announcement_in_recording {
        reasons.push(format!(
            "the announcement must be in the recording ({})",
            announcing.join(", ")
        ));
    }

    let internal: Vec<&str> = participants
        .iter()
        .filter(|p| p.internal)
        .map(|p| p.id.as_str())
        .collect();
    if !internal.is_empty() {
        reasons.push(format!(
            "internal participants ({}) follow the same rules: the policy has no internal exemption",
            internal.join(", ")
        ));
    }

    let (unknown_location_mode, unknown_location_mode_from) = rules.unknown_location_mode(policy);
    CallDecision {
        mode,
        scope,
        announcement_in_recording,
        unknown_location_mode,
        unknown_location_mode_from,
        per_participant,
        recorder,
        reasons,
    }
}

/// `alice in US-CA (all-party)`, `carol (location not covered: default_unknown)`.
fn describe(who: &str, r: &Resolution) -> String {
    if r.matched == DEFAULT_UNKNOWN {
        format!("{who} (location unknown or not covered: {DEFAULT_UNKNOWN})")
    } else if r.all_party {
        format!("{who} in {} (all-party)", r.matched)
    } else {
        format!("{who} in {}", r.matched)
    }
}

fn is_alpha2(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_subdivision(s: &str) -> bool {
    match s.split_once('-') {
        Some((country, rest)) => {
            is_alpha2(country)
                && (1..=3).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        }
        None => false,
    }
}

fn is_group_name(s: &str) -> bool {
    s.len() >= 3
        && s.as_bytes()[0].is_ascii_uppercase()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

// ---- The file as written, before validation. ----

/// A YAML mapping kept as written: file order, duplicates included (serde's
/// maps silently keep the last of two equal keys).
#[derive(Debug)]
struct Entries<V>(Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries(Vec::new()))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

impl<V> Entries<V> {
    /// The first key that appears twice.
    fn duplicate(&self) -> Option<&str> {
        let mut seen = BTreeSet::new();
        self.0
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| !seen.insert(*k))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    version: String,
    schema_version: String,
    disclaimer: String,
    modes: RawModes,
    decision_model: RawDecisionModel,
    #[serde(default)]
    groups: Entries<Vec<String>>,
    jurisdictions: Entries<RawJurisdiction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModes {
    order: Vec<String>,
    #[serde(default, rename = "note")]
    _note: Option<String>,
    #[serde(default)]
    definitions: Entries<String>,
}

/// `decision_model`: three fields the code uses, the rest prose for readers.
/// The prose fields are named so that anything else (a rule the code would
/// silently not apply, such as the old `escalations`) is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecisionModel {
    resolution_order: Vec<String>,
    default_unknown: String,
    #[serde(default)]
    low_confidence_location: Option<String>,
    #[serde(default, rename = "inputs")]
    _inputs: Option<serde_norway::Value>,
    #[serde(default, rename = "per_participant_mode")]
    _per_participant_mode: Option<String>,
    #[serde(default, rename = "subdivisions")]
    _subdivisions: Option<String>,
    #[serde(default, rename = "combine")]
    _combine: Option<String>,
    #[serde(default, rename = "prior_consent_on_file")]
    _prior_consent_on_file: Option<String>,
    #[serde(default, rename = "internal_meetings")]
    _internal_meetings: Option<String>,
    #[serde(default, rename = "final")]
    _final: Option<String>,
    #[serde(default, rename = "runtime")]
    _runtime: Option<serde_norway::Value>,
    #[serde(default, rename = "evidence_log")]
    _evidence_log: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJurisdiction {
    name: String,
    category: String,
    legal_floor: String,
    default_mode: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    source: Vec<String>,
    confidence: String,
    #[serde(default)]
    legal_floor_by_media: Entries<String>,
    #[serde(default)]
    default_mode_by_media: Entries<String>,
    #[serde(default)]
    requirements: Vec<String>,
    #[serde(default)]
    business_overlay: Option<String>,
    #[serde(default)]
    retention_max_days: Option<u32>,
    #[serde(default)]
    prior_consent_on_file_allowed: Option<bool>,
}

fn mode_at(place: impl Into<String>, found: &str) -> Result<ConsentMode, RulesError> {
    found.parse().map_err(|_| RulesError::UnknownMode {
        place: place.into(),
        found: found.to_owned(),
    })
}

fn non_empty(place: &str, value: &str) -> Result<(), RulesError> {
    if value.trim().is_empty() {
        return Err(RulesError::Empty {
            place: place.to_owned(),
        });
    }
    Ok(())
}

fn check_duplicates<V>(place: &str, entries: &Entries<V>) -> Result<(), RulesError> {
    match entries.duplicate() {
        Some(key) => Err(RulesError::DuplicateKey {
            place: place.to_owned(),
            key: key.to_owned(),
        }),
        None => Ok(()),
    }
}

fn media_modes(
    place: &str,
    entries: &Entries<String>,
) -> Result<BTreeMap<Media, ConsentMode>, RulesError> {
    check_duplicates(place, entries)?;
    let mut out = BTreeMap::new();
    for (key, value) in &entries.0 {
        let Some(media) = Media::ALL.into_iter().find(|m| m.as_str() == key) else {
            return Err(RulesError::InvalidValue {
                place: place.to_owned(),
                found: key.clone(),
                expected: "phone, video, in_person_room",
            });
        };
        out.insert(media, mode_at(format!("{place}.{key}"), value)?);
    }
    Ok(out)
}

impl RawRules {
    fn validate(self) -> Result<Rules, RulesError> {
        non_empty("version", &self.version)?;
        non_empty("schema_version", &self.schema_version)?;
        non_empty("disclaimer", &self.disclaimer)?;

        let expected: Vec<&str> = ConsentMode::ALL.iter().map(|m| m.as_str()).collect();
        if self.modes.order != expected {
            return Err(RulesError::ModeOrder {
                found: self.modes.order.clone(),
            });
        }
        check_duplicates("modes.definitions", &self.modes.definitions)?;
        for (key, _) in &self.modes.definitions.0 {
            mode_at("modes.definitions", key)?;
        }

        let dm = &self.decision_model;
        let mut resolution_order = Vec::new();
        for (i, name) in dm.resolution_order.iter().enumerate() {
            let step = Step::parse(name).ok_or_else(|| RulesError::InvalidValue {
                place: format!("decision_model.resolution_order[{i}]"),
                found: name.clone(),
                expected: STEP_NAMES,
            })?;
            if resolution_order.contains(&step) {
                return Err(RulesError::ResolutionOrder {
                    reason: format!("\"{name}\" is listed twice"),
                });
            }
            resolution_order.push(step);
        }
        if resolution_order.last() != Some(&Step::DefaultUnknown) {
            return Err(RulesError::ResolutionOrder {
                reason: "must end with default_unknown".to_owned(),
            });
        }
        let default_unknown = mode_at("decision_model.default_unknown", &dm.default_unknown)?;
        let low_confidence_location = dm
            .low_confidence_location
            .as_deref()
            .map(|m| mode_at("decision_model.low_confidence_location", m))
            .transpose()?;

        check_duplicates("groups", &self.groups)?;
        let mut groups = BTreeMap::new();
        let mut group_of: BTreeMap<String, String> = BTreeMap::new();
        for (group, members) in &self.groups.0 {
            if !is_group_name(group) {
                return Err(RulesError::BadGroupName {
                    group: group.clone(),
                });
            }
            for (i, member) in members.iter().enumerate() {
                let place = format!("groups.{group}[{i}]");
                if !is_alpha2(member) {
                    return Err(RulesError::BadGroupMember {
                        place,
                        member: member.clone(),
                    });
                }
                if let Some(first) = group_of.get(member) {
                    return Err(RulesError::DuplicateGroupMember {
                        place,
                        member: member.clone(),
                        first: first.clone(),
                    });
                }
                group_of.insert(member.clone(), group.clone());
            }
            groups.insert(group.clone(), members.clone());
        }

        check_duplicates("jurisdictions", &self.jurisdictions)?;
        let mut jurisdictions = BTreeMap::new();
        for (code, raw) in self.jurisdictions.0 {
            if !(is_alpha2(&code) || is_subdivision(&code) || groups.contains_key(&code)) {
                return Err(RulesError::BadJurisdictionCode { code });
            }
            let at = |field: &str| format!("jurisdictions.{code}.{field}");
            non_empty(&at("name"), &raw.name)?;
            let category = match raw.category.as_str() {
                "one_party" => Category::OneParty,
                "all_party" => Category::AllParty,
                "nuanced" => Category::Nuanced,
                _ => {
                    return Err(RulesError::InvalidValue {
                        place: at("category"),
                        found: raw.category,
                        expected: "one_party, all_party, nuanced",
                    });
                }
            };
            let legal_floor = mode_at(at("legal_floor"), &raw.legal_floor)?;
            let default_mode = mode_at(at("default_mode"), &raw.default_mode)?;
            if default_mode < legal_floor {
                return Err(RulesError::DefaultBelowFloor {
                    place: at("default_mode"),
                    default_mode,
                    legal_floor,
                });
            }
            if raw.source.is_empty() {
                return Err(RulesError::MissingSources {
                    place: at("source"),
                });
            }
            for (i, url) in raw.source.iter().enumerate() {
                let url = url.trim();
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"));
                if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                    return Err(RulesError::BadSource {
                        place: format!("jurisdictions.{code}.source[{i}]"),
                        found: url.to_owned(),
                    });
                }
            }
            let confidence = match raw.confidence.as_str() {
                "high" => Confidence::High,
                "medium" => Confidence::Medium,
                "low" => Confidence::Low,
                _ => {
                    return Err(RulesError::InvalidValue {
                        place: at("confidence"),
                        found: raw.confidence,
                        expected: "high, medium, low",
                    });
                }
            };
            let legal_floor_by_media =
                media_modes(&at("legal_floor_by_media"), &raw.legal_floor_by_media)?;
            let default_mode_by_media =
                media_modes(&at("default_mode_by_media"), &raw.default_mode_by_media)?;
            for media in Media::ALL {
                let floor = legal_floor_by_media
                    .get(&media)
                    .copied()
                    .unwrap_or(legal_floor);
                let recommended = default_mode_by_media
                    .get(&media)
                    .copied()
                    .unwrap_or(default_mode);
                if recommended < floor {
                    let field = if default_mode_by_media.contains_key(&media) {
                        "default_mode_by_media"
                    } else {
                        "default_mode"
                    };
                    let media_name = media.as_str();
                    return Err(RulesError::DefaultBelowFloor {
                        place: format!("jurisdictions.{code}.{field} (for {media_name})"),
                        default_mode: recommended,
                        legal_floor: floor,
                    });
                }
            }
            let mut requirements = BTreeSet::new();
            for (i, name) in raw.requirements.iter().enumerate() {
                let requirement = Requirement::ALL
                    .into_iter()
                    .find(|r| r.as_str() == name.trim())
                    .ok_or_else(|| RulesError::UnknownRequirement {
                        place: format!("jurisdictions.{code}.requirements[{i}]"),
                        found: name.clone(),
                    })?;
                requirements.insert(requirement);
            }
            let jurisdiction = Jurisdiction {
                code: code.clone(),
                name: raw.name,
                category,
                legal_floor,
                default_mode,
                notes: raw.notes,
                sources: raw.source.iter().map(|s| s.trim().to_owned()).collect(),
                confidence,
                legal_floor_by_media,
                default_mode_by_media,
                requirements,
                business_overlay: raw.business_overlay,
                retention_max_days: raw.retention_max_days,
                prior_consent_on_file_allowed: raw.prior_consent_on_file_allowed,
            };
            jurisdictions.insert(code, jurisdiction);
        }
        if let Some(group) = groups.keys().find(|g| !jurisdictions.contains_key(*g)) {
            return Err(RulesError::GroupWithoutEntry {
                group: group.clone(),
            });
        }

        let divided = jurisdictions
            .keys()
            .filter_map(|code| code.split_once('-').map(|(country, _)| country.to_owned()))
            .collect();

        Ok(Rules {
            version: self.version.trim().to_owned(),
            schema_version: self.schema_version.trim().to_owned(),
            disclaimer: self.disclaimer.trim().to_owned(),
            resolution_order,
            default_unknown,
            low_confidence_location,
            groups,
            group_of,
            jurisdictions,
            divided,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn builtin() -> &'static Rules {
        static RULES: OnceLock<Rules> = OnceLock::new();
        RULES.get_or_init(Rules::builtin)
    }

    fn loc(country: &str, subdivision: Option<&str>) -> Location {
        Location {
            country: country.to_owned(),
            subdivision: subdivision.map(str::to_owned),
        }
    }

    fn participant(id: &str, code: Option<&str>) -> ParticipantInput {
        ParticipantInput {
            id: id.to_owned(),
            location: code.map(|c| Location::from_code(c).unwrap()),
            internal: false,
            media: None,
            mixed: false,
        }
    }

    /// A small valid rules file; tests break one thing at a time.
    const SMALL: &str = r#"
version: "test-1"
schema_version: "0.1"
disclaimer: "Not legal advice."
modes:
  order: [none, notify, notify_and_allow_opt_out, explicit]
decision_model:
  resolution_order: [subdivision, country, group, default_unknown]
  default_unknown: notify_and_allow_opt_out
groups:
  EEA: ["AT", "DE"]
jurisdictions:
  US:
    name: "United States"
    category: one_party
    legal_floor: none
    default_mode: notify
    source: ["https://example.org/us"]
    confidence: high
  US-CA:
    name: "California"
    category: all_party
    legal_floor: notify_and_allow_opt_out
    default_mode: notify_and_allow_opt_out
    source: ["https://example.org/ca"]
    confidence: high
  EEA:
    name: "EEA"
    category: nuanced
    legal_floor: notify_and_allow_opt_out
    default_mode: notify_and_allow_opt_out
    source: ["https://example.org/eea"]
    confidence: medium
  DE:
    name: "Germany"
    category: all_party
    legal_floor: explicit
    default_mode: explicit
    source: ["https://example.org/de"]
    confidence: high
"#;

    /// `SMALL` with `from` replaced by `to` (which must occur).
    fn small_with(from: &str, to: &str) -> String {
        assert!(SMALL.contains(from), "{from:?} not in SMALL");
        SMALL.replacen(from, to, 1)
    }

    fn parse_err(yaml: &str) -> String {
        match Rules::parse(yaml) {
            Ok(_) => panic!("parsed, but should not have:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    // ---- modes ----

    #[test]
    fn modes_are_ordered_by_strictness() {
        use ConsentMode::*;
        assert!(None < Notify && Notify < NotifyAndAllowOptOut && NotifyAndAllowOptOut < Explicit);
        assert_eq!(ConsentMode::default(), None);
    }

    #[test]
    fn mode_names_round_trip_and_unknown_lists_the_valid_ones() {
        for mode in ConsentMode::ALL {
            assert_eq!(mode.as_str().parse::<ConsentMode>(), Ok(mode));
            assert_eq!(
                serde_json::to_string(&mode).unwrap(),
                format!("\"{}\"", mode.as_str())
            );
        }
        let err = "explict".parse::<ConsentMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown mode \"explict\" (expected one of none, notify, notify_and_allow_opt_out, explicit)"
        );
    }

    // ---- the shipped file ----

    #[test]
    fn flow_collections_nested_deeper_than_32_are_refused_before_parsing() {
        let nested = |depth: usize| {
            format!(
                "version: x\nlist: {}1{}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        assert!(check_flow_depth(&nested(32)).is_ok());
        let err = check_flow_depth(&nested(33)).unwrap_err().to_string();
        assert_eq!(
            err,
            "line 2: flow collections ({ or [) nested more than 32 deep"
        );
        // What the fuzzer found: 16 KB of `{`, which the YAML scanner took
        // half a second to refuse, is refused here at the 33rd.
        let flood = format!("gydzve: &wfrof {}", "{".repeat(16_000));
        assert!(
            Rules::parse(&flood)
                .unwrap_err()
                .to_string()
                .contains("nested more than 32")
        );
    }

    #[test]
    fn brackets_in_comments_and_quoted_scalars_do_not_count() {
        let many = "[".repeat(40);
        let text =
            format!("# {many}\na: '{many}'\nb: \"{many} \\\" {many}\"\nc: don't [x] # {many}\n");
        assert!(check_flow_depth(&text).is_ok(), "{text}");
        // A quote inside a plain scalar opens nothing: the brackets after
        // it still count.
        let text = format!("c: don't {}", "[".repeat(33));
        assert!(check_flow_depth(&text).is_err());
    }

    #[test]
    fn builtin_rules_parse() {
        let rules = Rules::parse(Rules::builtin_text()).expect("consent/rules.yaml");
        assert!(
            rules.jurisdiction_count() >= 60,
            "{}",
            rules.jurisdiction_count()
        );
        assert!(!rules.version().is_empty());
        assert!(rules.disclaimer().starts_with("Not legal advice"));
        // Unknown facts fail closed (consent-audit U1): DE and CH need
        // explicit, so an unknown location does too.
        assert_eq!(rules.default_unknown(), ConsentMode::Explicit);
        assert_eq!(rules.low_confidence_location(), Some(ConsentMode::Explicit));
        for j in rules.jurisdictions() {
            assert!(!j.sources.is_empty(), "{}", j.code);
            assert!(!j.notes.is_empty(), "{}", j.code);
        }
        // The Norway problem: NO must stay a country, not become `false`.
        assert_eq!(rules.group_of("NO"), Some("EEA"));
        assert_eq!(rules.group_members("EEA").map(<[String]>::len), Some(30));
    }

    #[test]
    fn builtin_rules_cover_every_us_state_and_dc() {
        let states = "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO \
                      MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC";
        for s in states.split_whitespace() {
            assert!(
                builtin().jurisdiction(&format!("US-{s}")).is_some(),
                "US-{s}"
            );
        }
    }

    // ---- resolution ----

    #[test]
    fn subdivision_beats_country() {
        let r = builtin().resolve(Some(&loc("US", Some("US-CA"))));
        assert_eq!(r.matched, "US-CA");
        assert_eq!(r.mode, ConsentMode::NotifyAndAllowOptOut);
        assert_eq!(r.legal_floor, ConsentMode::NotifyAndAllowOptOut);
        assert!(r.all_party);
        assert_eq!(
            r.why,
            "US-CA (California): all-party; legal floor notify_and_allow_opt_out"
        );
    }

    #[test]
    fn short_and_lower_case_subdivisions_are_normalized() {
        for l in [
            loc("US", Some("CA")),
            loc("us", Some("ca")),
            loc(" us ", Some("us-ca")),
            loc("", Some("US-CA")),
        ] {
            assert_eq!(builtin().resolve(Some(&l)).matched, "US-CA", "{l:?}");
        }
    }

    #[test]
    fn country_beats_group_and_unknown_subdivision_falls_to_country() {
        let r = builtin().resolve(Some(&loc("US", Some("US-ZZ"))));
        assert_eq!(r.matched, "US");
        assert!(
            r.why.contains("for US-ZZ (no entry of its own)"),
            "{}",
            r.why
        );
        // US has state entries, so US-ZZ could be any state: the strictest
        // of US (floor none, notify) and default_unknown (explicit).
        assert_eq!(r.mode, ConsentMode::Explicit);
        assert_eq!(r.legal_floor, ConsentMode::Explicit);
        assert!(!r.all_party, "US is one-party");
        let de = builtin().resolve(Some(&loc("DE", None)));
        assert_eq!(de.matched, "DE", "DE has its own entry, though in EEA");
        assert_eq!(de.mode, ConsentMode::Explicit);
    }

    #[test]
    fn eea_member_without_entry_falls_to_eea() {
        let r = builtin().resolve(Some(&loc("AT", None)));
        assert_eq!(r.matched, "EEA");
        assert!(!r.all_party);
        assert!(r.why.contains("for AT (no entry of its own)"), "{}", r.why);
        assert_eq!(builtin().resolve(Some(&loc("no", None))).matched, "EEA");
    }

    #[test]
    fn unknown_locations_get_default_unknown() {
        for l in [
            None,
            Some(loc("ZA", None)),
            Some(loc("USA", None)),
            Some(loc("", None)),
        ] {
            let r = builtin().resolve(l.as_ref());
            assert_eq!(r.matched, DEFAULT_UNKNOWN, "{l:?}");
            assert_eq!(r.mode, ConsentMode::Explicit);
            assert_eq!(r.legal_floor, ConsentMode::Explicit);
            assert!(!r.all_party);
        }
    }

    #[test]
    fn subdivision_of_another_country_is_ignored_and_said() {
        let r = builtin().resolve(Some(&loc("US", Some("DE-BY"))));
        assert_eq!(r.matched, "US");
        assert!(r.why.contains("\"DE-BY\" ignored"), "{}", r.why);
    }

    #[test]
    fn resolution_order_comes_from_the_file() {
        let rules = Rules::parse(&small_with(
            "[subdivision, country, group, default_unknown]",
            "[country, subdivision, default_unknown]",
        ))
        .unwrap();
        assert_eq!(rules.resolve(Some(&loc("US", Some("CA")))).matched, "US");
        assert_eq!(
            rules.resolve(Some(&loc("AT", None))).matched,
            DEFAULT_UNKNOWN,
            "no group step"
        );
    }

    #[test]
    fn location_codes_validate_with_the_failing_part_named() {
        assert_eq!(Location::from_code("us-ca"), Ok(loc("US", Some("US-CA"))));
        assert_eq!(Location::from_code("DE"), Ok(loc("DE", None)));
        assert!(matches!(
            Location::from_code("USA"),
            Err(LocationError::Country { .. })
        ));
        assert!(matches!(
            loc("US", Some("CALIF")).validate(),
            Err(LocationError::Subdivision { .. })
        ));
        assert_eq!(
            loc("US", Some("DE-BY")).validate().unwrap_err().to_string(),
            "subdivision DE-BY is not in country US"
        );
    }

    // ---- policy ----

    #[test]
    fn policy_min_mode_raises() {
        let policy = Policy {
            min_mode: ConsentMode::Explicit,
            ..Policy::default()
        };
        let r = builtin().resolve_with_policy(&policy, Some(&loc("US", Some("NY"))));
        assert_eq!(r.mode, ConsentMode::Explicit);
        assert_eq!(r.legal_floor, ConsentMode::None);
        assert!(
            r.why.ends_with("raised to the company minimum explicit"),
            "{}",
            r.why
        );
    }

    #[test]
    fn policy_overrides_never_go_below_the_legal_floor() {
        let policy = Policy {
            min_mode: ConsentMode::None,
            overrides: [
                ("US-CA".to_owned(), ConsentMode::None),
                ("US".to_owned(), ConsentMode::None),
                ("DE".to_owned(), ConsentMode::Notify),
            ]
            .into(),
            unknown_location_mode: None,
        };
        let ca = builtin().resolve_with_policy(&policy, Some(&loc("US", Some("CA"))));
        assert_eq!(ca.mode, ConsentMode::NotifyAndAllowOptOut);
        assert!(ca.why.contains("kept at the legal floor"), "{}", ca.why);
        let de = builtin().resolve_with_policy(&policy, Some(&loc("DE", None)));
        assert_eq!(de.mode, ConsentMode::Explicit);
        // A one-party state with floor none may be lowered to none.
        let ny = builtin().resolve_with_policy(&policy, Some(&loc("US", Some("NY"))));
        assert_eq!(ny.mode, ConsentMode::None);
    }

    #[test]
    fn policy_override_of_a_country_covers_its_subdivisions_and_groups() {
        let policy = Policy {
            min_mode: ConsentMode::None,
            overrides: [
                ("us".to_owned(), ConsentMode::Explicit),
                ("EEA".to_owned(), ConsentMode::Explicit),
                ("default_unknown".to_owned(), ConsentMode::Explicit),
            ]
            .into(),
            unknown_location_mode: None,
        };
        for l in [
            Some(loc("US", Some("NY"))),
            Some(loc("US", Some("CA"))),
            Some(loc("AT", None)),
            None,
        ] {
            let r = builtin().resolve_with_policy(&policy, l.as_ref());
            assert_eq!(r.mode, ConsentMode::Explicit, "{l:?}");
            assert!(r.why.contains("company override for"), "{}", r.why);
        }
        // The most specific override wins.
        let policy = Policy {
            min_mode: ConsentMode::None,
            overrides: [
                ("US".to_owned(), ConsentMode::Explicit),
                ("US-NY".to_owned(), ConsentMode::Notify),
            ]
            .into(),
            unknown_location_mode: None,
        };
        let ny = builtin().resolve_with_policy(&policy, Some(&loc("US", Some("NY"))));
        assert_eq!(ny.mode, ConsentMode::Notify);
    }

    // ---- decide ----

    #[test]
    fn strictest_participant_wins() {
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("US", Some("NY"))),
            &[
                participant("bob", Some("US-NY")),
                participant("alice", Some("US-CA")),
            ],
        );
        assert_eq!(d.mode, ConsentMode::NotifyAndAllowOptOut);
        assert_eq!(d.per_participant[0].0, "bob");
        assert_eq!(d.per_participant[0].1.mode, ConsentMode::Notify);
        assert_eq!(d.per_participant[1].1.matched, "US-CA");
        assert_eq!(d.recorder.matched, "US-NY");
        assert_eq!(
            d.reasons[0],
            "strictest: alice in US-CA (all-party) requires notify_and_allow_opt_out"
        );
    }

    #[test]
    fn the_recorder_counts_like_a_participant() {
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("DE", None)),
            &[participant("bob", Some("US-NY"))],
        );
        assert_eq!(d.mode, ConsentMode::Explicit);
        assert_eq!(d.scope, GateScope::CallWide);
        assert_eq!(
            d.reasons[0],
            "strictest: the recorder in DE (all-party) requires explicit"
        );
        // No recorder location: the default for unknown locations.
        let d = decide(builtin(), &Policy::default(), None, &[]);
        assert_eq!(d.mode, ConsentMode::Explicit);
        assert_eq!(d.recorder.matched, DEFAULT_UNKNOWN);
        assert_eq!(d.scope, GateScope::PerParticipant);
    }

    #[test]
    fn ties_name_everyone_who_requires_the_mode() {
        // The company puts unknown locations at opt-out, like US-CA.
        let policy = Policy {
            unknown_location_mode: Some(ConsentMode::NotifyAndAllowOptOut),
            ..Policy::default()
        };
        let d = decide(
            builtin(),
            &policy,
            Some(&loc("US", Some("NY"))),
            &[
                participant("alice", Some("US-CA")),
                participant("carol", None),
            ],
        );
        assert_eq!(
            d.reasons[0],
            "strictest: alice in US-CA (all-party), carol (location unknown or not covered: \
             default_unknown) require notify_and_allow_opt_out"
        );
    }

    #[test]
    fn scope_is_call_wide_only_with_an_all_party_jurisdiction() {
        let policy = Policy::default();
        let one_party = decide(
            builtin(),
            &policy,
            Some(&loc("US", Some("NY"))),
            &[
                participant("a", Some("US-NY")),
                participant("b", Some("AT")),
                participant("c", None),
            ],
        );
        assert_eq!(one_party.scope, GateScope::PerParticipant);
        assert_eq!(one_party.mode, ConsentMode::Explicit, "c is unknown");

        let all_party = decide(
            builtin(),
            &policy,
            Some(&loc("US", Some("NY"))),
            &[
                participant("a", Some("US-NY")),
                participant("d", Some("US-FL")),
            ],
        );
        assert_eq!(all_party.scope, GateScope::CallWide);
        assert!(
            all_party
                .reasons
                .iter()
                .any(|r| r.starts_with("call-wide gate") && r.contains("d in US-FL")),
            "{:?}",
            all_party.reasons
        );

        let recorder_all_party = decide(
            builtin(),
            &policy,
            Some(&loc("US", Some("CA"))),
            &[participant("a", Some("US-NY"))],
        );
        assert_eq!(recorder_all_party.scope, GateScope::CallWide);
    }

    #[test]
    fn all_party_with_mode_none_is_per_participant() {
        let yaml = small_with(
            "    category: all_party\n    legal_floor: notify_and_allow_opt_out\n    default_mode: notify_and_allow_opt_out",
            "    category: all_party\n    legal_floor: none\n    default_mode: none",
        )
        .replace(
            "default_unknown: notify_and_allow_opt_out",
            "default_unknown: none",
        )
        .replace("default_mode: notify\n", "default_mode: none\n");
        let rules = Rules::parse(&yaml).unwrap();
        let d = decide(
            &rules,
            &Policy::default(),
            Some(&loc("US", None)),
            &[participant("a", Some("US-CA"))],
        );
        assert_eq!(d.mode, ConsentMode::None);
        assert_eq!(d.scope, GateScope::PerParticipant);
    }

    #[test]
    fn policy_min_mode_lifts_the_call_and_is_a_reason() {
        let policy = Policy {
            min_mode: ConsentMode::Explicit,
            ..Policy::default()
        };
        let d = decide(
            builtin(),
            &policy,
            Some(&loc("US", None)),
            &[participant("a", Some("US-NY"))],
        );
        assert_eq!(d.mode, ConsentMode::Explicit);
        assert!(
            d.reasons
                .iter()
                .any(|r| r == "company minimum mode explicit applies to everyone")
        );
    }

    #[test]
    fn internal_participants_are_reported_not_exempted() {
        let mut p = participant("dave", Some("US-CA"));
        p.internal = true;
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("US", Some("NY"))),
            &[p],
        );
        assert_eq!(d.mode, ConsentMode::NotifyAndAllowOptOut);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("internal participants (dave)"))
        );
    }

    #[test]
    fn decision_serializes_participants_as_objects() {
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("US", Some("NY"))),
            &[participant("alice", Some("US-CA"))],
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["mode"], "notify_and_allow_opt_out");
        assert_eq!(v["scope"], "call_wide");
        assert_eq!(v["announcement_in_recording"], false);
        assert_eq!(v["unknown_location_mode"], "explicit");
        assert_eq!(v["unknown_location_mode_from"], "rules");
        assert_eq!(v["participants"][0]["id"], "alice");
        assert_eq!(v["participants"][0]["matched"], "US-CA");
        assert!(v["participants"][0].get("requirements").is_none());
        assert_eq!(v["recorder"]["matched"], "US-NY");
    }

    // ---- fail closed, and the company's unknown-location mode ----

    fn with_unknown_mode(mode: ConsentMode) -> Policy {
        Policy {
            unknown_location_mode: Some(mode),
            ..Policy::default()
        }
    }

    #[test]
    fn unknown_location_mode_comes_from_the_rules_or_the_policy() {
        assert_eq!(
            builtin().unknown_location_mode(&Policy::default()),
            (ConsentMode::Explicit, "rules")
        );
        assert_eq!(
            builtin().unknown_location_mode(&with_unknown_mode(ConsentMode::None)),
            (ConsentMode::None, "policy")
        );
        let d = decide(
            builtin(),
            &with_unknown_mode(ConsentMode::Notify),
            None,
            &[],
        );
        assert_eq!(d.unknown_location_mode, ConsentMode::Notify);
        assert_eq!(d.unknown_location_mode_from, "policy");
    }

    #[test]
    fn the_policy_mode_replaces_default_unknown_even_lower() {
        // A company that knows better: none for participants without a
        // location, although the rules say explicit.
        let policy = with_unknown_mode(ConsentMode::None);
        let r = builtin().resolve_participant(&policy, &participant("carol", None));
        assert_eq!(r.matched, DEFAULT_UNKNOWN);
        assert_eq!(r.mode, ConsentMode::None);
        assert_eq!(r.legal_floor, ConsentMode::None);
        assert!(
            r.why.contains(
                "the company's unknown-location mode is none (the rules' default is explicit)"
            ),
            "{}",
            r.why
        );
        // A known entry's floor still applies: DE is explicit, AU (any
        // state) at least notify_and_allow_opt_out.
        let de = builtin().resolve_participant(&policy, &participant("d", Some("DE")));
        assert_eq!(de.mode, ConsentMode::Explicit);
        let au = builtin().resolve_participant(&policy, &participant("a", Some("AU")));
        assert_eq!(au.mode, ConsentMode::NotifyAndAllowOptOut);
        assert_eq!(au.legal_floor, ConsentMode::NotifyAndAllowOptOut);
        // The company minimum still lifts it.
        let policy = Policy {
            min_mode: ConsentMode::Notify,
            ..with_unknown_mode(ConsentMode::None)
        };
        let r = builtin().resolve_participant(&policy, &participant("carol", None));
        assert_eq!(r.mode, ConsentMode::Notify);
    }

    #[test]
    fn the_engine_sees_the_policy_mode_for_participants_without_location() {
        let policy = with_unknown_mode(ConsentMode::Notify);
        let d = decide(
            builtin(),
            &policy,
            Some(&loc("US", Some("NY"))),
            &[participant("carol", None)],
        );
        // carol: the company's notify; the recorder US-NY: notify.
        assert_eq!(d.mode, ConsentMode::Notify);
        assert_eq!(d.per_participant[0].1.mode, ConsentMode::Notify);
    }

    // ---- subdivisions ----

    #[test]
    fn a_country_given_alone_where_its_subdivisions_differ_is_the_strictest() {
        // US and AU have subdivision entries: the country alone, or a
        // subdivision without an entry, could be any of them. US: floor
        // none, notify, one-party; AU: floor and mode opt-out, nuanced;
        // default_unknown: explicit.
        for (l, code) in [
            (loc("US", None), "US"),
            (loc("US", Some("US-ZZ")), "US"),
            (loc("AU", None), "AU"),
            (loc("AU", Some("AU-XYZ")), "AU"),
        ] {
            assert!(builtin().varies_by_subdivision(code));
            let r = builtin().resolve(Some(&l));
            assert_eq!(r.matched, code, "{l:?}");
            assert_eq!(r.mode, ConsentMode::Explicit, "{l:?}");
            assert_eq!(r.legal_floor, ConsentMode::Explicit, "{l:?}");
            assert!(!r.all_party, "{l:?}");
            assert!(r.why.contains("rules differ by subdivision"), "{}", r.why);
        }
        // GB and CA have no subdivision entries: the country's rule is the
        // rule everywhere in it (opt-out, one-party).
        for l in [
            loc("GB", Some("GB-SCT")),
            loc("CA", Some("QC")),
            loc("GB", None),
        ] {
            let r = builtin().resolve(Some(&l));
            assert_eq!(r.mode, ConsentMode::NotifyAndAllowOptOut, "{l:?}");
            assert_eq!(r.legal_floor, ConsentMode::NotifyAndAllowOptOut, "{l:?}");
        }
        assert!(!builtin().varies_by_subdivision("GB"));
        // Under a company unknown-location mode of notify, US alone is the
        // strictest of US (notify) and notify; AU stays at its own floor.
        let policy = with_unknown_mode(ConsentMode::Notify);
        let us = builtin().resolve_with_policy(&policy, Some(&loc("US", None)));
        assert_eq!(
            (us.mode, us.legal_floor),
            (ConsentMode::Notify, ConsentMode::Notify)
        );
        let au = builtin().resolve_with_policy(&policy, Some(&loc("AU", None)));
        assert_eq!(au.mode, ConsentMode::NotifyAndAllowOptOut);
    }

    #[test]
    fn a_subdivision_never_weakens_its_country() {
        // AU-VIC, AU-QLD, AU-NT: notify in the file, AU's floor is
        // notify_and_allow_opt_out (TIA Act, APP 5).
        for code in ["AU-VIC", "AU-QLD", "AU-NT"] {
            let r = builtin().resolve(Some(&Location::from_code(code).unwrap()));
            assert_eq!(r.matched, code);
            assert_eq!(r.legal_floor, ConsentMode::NotifyAndAllowOptOut, "{code}");
            assert_eq!(r.mode, ConsentMode::NotifyAndAllowOptOut, "{code}");
            assert!(!r.all_party, "{code}: AU is nuanced, VIC one-party");
            assert!(r.why.contains("raised to AU's legal floor"), "{}", r.why);
        }
        // An override cannot take a state below its country's floor.
        let policy = Policy {
            overrides: [("AU-VIC".to_owned(), ConsentMode::Notify)].into(),
            ..Policy::default()
        };
        let vic = builtin().resolve_with_policy(&policy, Some(&loc("AU", Some("VIC"))));
        assert_eq!(vic.mode, ConsentMode::NotifyAndAllowOptOut);
        // NSW is all-party itself.
        let nsw = builtin().resolve(Some(&loc("AU", Some("NSW"))));
        assert!(nsw.all_party);
        assert_eq!(nsw.mode, ConsentMode::NotifyAndAllowOptOut);
    }

    #[test]
    fn a_subdivision_inherits_all_party_and_requirements() {
        let yaml = format!(
            "{}  DE-BY:\n    name: \"Bavaria\"\n    category: one_party\n    legal_floor: none\n    \
             default_mode: notify\n    source: [\"https://example.org/by\"]\n    confidence: low\n",
            small_with(
                "    source: [\"https://example.org/de\"]\n",
                "    source: [\"https://example.org/de\"]\n    requirements: [announcement_in_recording]\n",
            )
        );
        let rules = Rules::parse(&yaml).unwrap();
        let r = rules.resolve(Some(&loc("DE", Some("BY"))));
        assert_eq!(r.matched, "DE-BY");
        assert_eq!(r.legal_floor, ConsentMode::Explicit);
        assert_eq!(r.mode, ConsentMode::Explicit);
        assert!(r.all_party);
        assert!(r.why.contains("all-party under DE's rule"), "{}", r.why);
        assert_eq!(
            r.requirements,
            BTreeSet::from([Requirement::AnnouncementInRecording])
        );
    }

    // ---- Switzerland ----

    #[test]
    fn switzerland_is_all_party_explicit() {
        let ch = builtin().jurisdiction("CH").expect("CH entry");
        assert_eq!(ch.category, Category::AllParty);
        assert_eq!(ch.legal_floor, ConsentMode::Explicit);
        assert!(ch.notes.contains("179ter"), "{}", ch.notes);
        assert!(!ch.sources.is_empty());
        assert_eq!(builtin().group_of("CH"), None, "not in the EEA");
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("US", Some("NY"))),
            &[
                participant("ueli", Some("CH")),
                participant("bob", Some("US-NY")),
            ],
        );
        assert_eq!(d.mode, ConsentMode::Explicit);
        assert_eq!(d.scope, GateScope::CallWide);
        assert_eq!(d.per_participant[0].1.matched, "CH");
    }

    // ---- media ----

    fn with_media(code: &str, media: Option<Media>, mixed: bool) -> ParticipantInput {
        ParticipantInput {
            media,
            mixed,
            ..participant("p", Some(code))
        }
    }

    fn floor_and_mode(code: &str, media: Option<Media>, mixed: bool) -> (ConsentMode, ConsentMode) {
        let r = builtin().resolve_participant(&Policy::default(), &with_media(code, media, mixed));
        (r.legal_floor, r.mode)
    }

    #[test]
    fn media_pick_the_floor_and_mode_as_the_file_writes_them() {
        use ConsentMode::{Notify, NotifyAndAllowOptOut};
        const NONE: ConsentMode = ConsentMode::None;
        // US-OR: general floor notify, default opt-out; by medium: phone
        // floor none and default notify, video and room floor notify.
        assert_eq!(
            floor_and_mode("US-OR", None, false),
            (NONE, Notify),
            "audio call = phone"
        );
        assert_eq!(
            floor_and_mode("US-OR", Some(Media::Phone), false),
            (NONE, Notify)
        );
        assert_eq!(
            floor_and_mode("US-OR", Some(Media::Video), false),
            (Notify, NotifyAndAllowOptOut)
        );
        assert_eq!(
            floor_and_mode("US-OR", Some(Media::InPersonRoom), false),
            (Notify, NotifyAndAllowOptOut)
        );
        // US-CT: calls opt-out; in a room floor none, default notify.
        assert_eq!(
            floor_and_mode("US-CT", None, false),
            (NotifyAndAllowOptOut, NotifyAndAllowOptOut)
        );
        assert_eq!(
            floor_and_mode("US-CT", Some(Media::InPersonRoom), false),
            (NONE, Notify)
        );
        // US-NV likewise.
        assert_eq!(
            floor_and_mode("US-NV", Some(Media::InPersonRoom), false),
            (NONE, Notify)
        );
        // US-HI: phone none/notify; a room device opt-out.
        assert_eq!(floor_and_mode("US-HI", None, false), (NONE, Notify));
        assert_eq!(
            floor_and_mode("US-HI", Some(Media::InPersonRoom), false),
            (NotifyAndAllowOptOut, NotifyAndAllowOptOut)
        );
        // No by-media entry: every medium is the general rule.
        assert_eq!(
            floor_and_mode("US-CA", Some(Media::InPersonRoom), false),
            (NotifyAndAllowOptOut, NotifyAndAllowOptOut)
        );
        let r = builtin().resolve_participant(
            &Policy::default(),
            &with_media("US-OR", Some(Media::Video), false),
        );
        assert!(r.why.contains("by medium (video)"), "{}", r.why);
    }

    #[test]
    fn a_policy_override_replaces_the_media_default_not_the_media_floor() {
        // US-OR video: floor notify. An override of none stays at notify.
        let policy = Policy {
            overrides: [("US-OR".to_owned(), ConsentMode::None)].into(),
            ..Policy::default()
        };
        let r =
            builtin().resolve_participant(&policy, &with_media("US-OR", Some(Media::Video), false));
        assert_eq!(r.mode, ConsentMode::Notify);
    }

    // ---- mixed m-lines ----

    #[test]
    fn a_mixed_line_is_the_strictest_of_what_it_may_carry() {
        use ConsentMode::{Explicit, Notify, NotifyAndAllowOptOut};
        const NONE: ConsentMode = ConsentMode::None;
        // Medium unknown: the strictest over phone, video, room. US-OR:
        // floors none/notify/notify, modes notify/opt-out/opt-out.
        assert_eq!(
            floor_and_mode("US-OR", None, true),
            (Notify, NotifyAndAllowOptOut)
        );
        // US-HI: floors none/none/opt-out, modes notify/notify/opt-out.
        assert_eq!(
            floor_and_mode("US-HI", None, true),
            (NotifyAndAllowOptOut, NotifyAndAllowOptOut)
        );
        // A medium given is used as given.
        assert_eq!(
            floor_and_mode("US-HI", Some(Media::Phone), true),
            (NONE, Notify)
        );
        // At least its location's mode.
        assert_eq!(floor_and_mode("DE", None, true), (Explicit, Explicit));
    }

    #[test]
    fn a_mixed_line_makes_the_gate_call_wide() {
        // Everyone one-party (US-NY: notify), but one m-line is a room.
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("US", Some("NY"))),
            &[
                with_media("US-NY", None, false),
                ParticipantInput {
                    id: "room".to_owned(),
                    ..with_media("US-NY", None, true)
                },
            ],
        );
        assert_eq!(d.mode, ConsentMode::Notify);
        assert_eq!(d.scope, GateScope::CallWide);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.starts_with("call-wide gate: mixed m-lines (room)")),
            "{:?}",
            d.reasons
        );
        assert!(d.per_participant[1].1.why.contains("mixed m-line"));
        // Under mode none there is nothing to wait for.
        let policy = Policy {
            overrides: [("US".to_owned(), ConsentMode::None)].into(),
            ..Policy::default()
        };
        let d = decide(
            builtin(),
            &policy,
            Some(&loc("US", Some("NY"))),
            &[with_media("US-NY", None, true)],
        );
        assert_eq!(d.mode, ConsentMode::None);
        assert_eq!(d.scope, GateScope::PerParticipant);
    }

    // ---- requirements ----

    #[test]
    fn announcement_in_recording_follows_wa_and_ct() {
        let call = |recorder: &str, people: &[&str]| {
            let participants: Vec<ParticipantInput> = people
                .iter()
                .map(|code| ParticipantInput {
                    id: code.to_ascii_lowercase(),
                    ..participant("", Some(code))
                })
                .collect();
            decide(
                builtin(),
                &Policy::default(),
                Some(&Location::from_code(recorder).unwrap()),
                &participants,
            )
        };
        let wa = call("US-NY", &["US-WA", "US-NY"]);
        assert!(wa.announcement_in_recording);
        assert!(
            wa.reasons
                .iter()
                .any(|r| r == "the announcement must be in the recording (us-wa in US-WA)"),
            "{:?}",
            wa.reasons
        );
        assert!(
            call("US-CT", &["US-NY"]).announcement_in_recording,
            "the recorder's entry counts"
        );
        assert!(!call("US-NY", &["US-CA", "DE", "CH"]).announcement_in_recording);
        let wa = builtin().resolve(Some(&loc("US", Some("WA"))));
        assert_eq!(
            wa.requirements,
            BTreeSet::from([Requirement::AnnouncementInRecording])
        );
    }

    #[test]
    fn unknown_requirement_names_the_entry() {
        let err = parse_err(&small_with(
            "    source: [\"https://example.org/ca\"]\n",
            "    source: [\"https://example.org/ca\"]\n    requirements: [announcement_in_recording, beep_every_15s]\n",
        ));
        assert_eq!(
            err,
            "jurisdictions.US-CA.requirements[1]: unknown requirement \"beep_every_15s\" \
             (Hearken implements announcement_in_recording)"
        );
    }

    // ---- validation errors: each names the place ----

    #[test]
    fn small_rules_parse() {
        let rules = Rules::parse(SMALL).unwrap();
        assert_eq!(rules.version(), "test-1");
        assert_eq!(rules.jurisdiction_count(), 4);
    }

    #[test]
    fn unknown_mode_names_the_field() {
        let err = parse_err(&small_with(
            "legal_floor: notify_and_allow_opt_out",
            "legal_floor: explict",
        ));
        assert_eq!(
            err,
            "jurisdictions.US-CA.legal_floor: unknown mode \"explict\" (expected one of none, \
             notify, notify_and_allow_opt_out, explicit)"
        );
    }

    #[test]
    fn unknown_default_unknown_mode() {
        let err = parse_err(&small_with(
            "default_unknown: notify_and_allow_opt_out",
            "default_unknown: ask",
        ));
        assert!(
            err.starts_with("decision_model.default_unknown: unknown mode \"ask\""),
            "{err}"
        );
    }

    #[test]
    fn group_member_must_be_two_letters() {
        let err = parse_err(&small_with(r#"["AT", "DE"]"#, r#"["AT", "DEU"]"#));
        assert_eq!(
            err,
            "groups.EEA[1]: \"DEU\" is not a 2-letter ISO 3166-1 country code (like \"DE\")"
        );
    }

    #[test]
    fn group_member_listed_twice() {
        let err = parse_err(&small_with(r#"["AT", "DE"]"#, r#"["AT", "DE", "AT"]"#));
        assert_eq!(
            err,
            "groups.EEA[2]: AT is already a member of EEA; a country belongs to one group"
        );
    }

    #[test]
    fn group_name_must_not_look_like_a_country() {
        let err = parse_err(&small_with("  EEA: [", "  EU: ["));
        assert!(err.starts_with("groups.EU: a group name"), "{err}");
    }

    #[test]
    fn group_needs_an_entry() {
        let err = parse_err(&small_with("  EEA: [", "  EEA: [\"FR\"]\n  EFTA: ["));
        assert_eq!(
            err,
            "groups.EFTA: no jurisdictions.EFTA entry gives this group's rule"
        );
    }

    #[test]
    fn jurisdiction_code_must_be_iso_shaped() {
        for bad in ["USA", "us", "US-CALIF", "U1", "us-ca"] {
            let err = parse_err(&small_with("  US-CA:\n", &format!("  {bad}:\n")));
            assert!(
                err.starts_with(&format!(
                    "jurisdictions.{bad}: not an ISO 3166-1 alpha-2 code"
                )),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn default_mode_below_legal_floor() {
        let err = parse_err(&small_with(
            "    legal_floor: explicit\n    default_mode: explicit",
            "    legal_floor: explicit\n    default_mode: notify",
        ));
        assert_eq!(
            err,
            "jurisdictions.DE.default_mode: notify is below the legal floor explicit"
        );
    }

    #[test]
    fn default_by_media_below_floor_by_media() {
        let err = parse_err(&small_with(
            "    confidence: high\n  US-CA:",
            "    confidence: high\n    legal_floor_by_media:\n      video: explicit\n  US-CA:",
        ));
        assert_eq!(
            err,
            "jurisdictions.US.default_mode (for video): notify is below the legal floor explicit"
        );
        let err = parse_err(&small_with(
            "    confidence: high\n  US-CA:",
            "    confidence: high\n    legal_floor_by_media:\n      radio: none\n  US-CA:",
        ));
        assert!(
            err.starts_with("jurisdictions.US.legal_floor_by_media: unknown value \"radio\""),
            "{err}"
        );
    }

    #[test]
    fn sources_are_required_and_must_be_urls() {
        let err = parse_err(&small_with(
            r#"source: ["https://example.org/ca"]"#,
            "source: []",
        ));
        assert_eq!(
            err,
            "jurisdictions.US-CA.source: no sources; every entry needs at least one source URL"
        );
        let err = parse_err(&small_with(
            "    source: [\"https://example.org/ca\"]\n",
            "",
        ));
        assert!(
            err.starts_with("jurisdictions.US-CA.source: no sources"),
            "{err}"
        );
        let err = parse_err(&small_with(
            r#"source: ["https://example.org/ca"]"#,
            r#"source: ["https://example.org/ca", "example.org"]"#,
        ));
        assert_eq!(
            err,
            "jurisdictions.US-CA.source[1]: \"example.org\" is not an http:// or https:// URL"
        );
    }

    #[test]
    fn duplicate_jurisdiction_key() {
        let dup = "  US-CA:\n    name: \"Again\"\n    category: one_party\n    legal_floor: none\n    \
                   default_mode: none\n    source: [\"https://example.org\"]\n    confidence: low\n";
        let err = parse_err(&format!("{SMALL}{dup}"));
        assert_eq!(err, "jurisdictions: duplicate key \"US-CA\"");
    }

    #[test]
    fn duplicate_top_level_field() {
        let err = parse_err(&format!("{SMALL}version: \"again\"\n"));
        assert!(err.contains("duplicate field `version`"), "{err}");
    }

    #[test]
    fn unknown_category_and_confidence() {
        let err = parse_err(&small_with("category: all_party", "category: two_party"));
        assert_eq!(
            err,
            "jurisdictions.US-CA.category: unknown value \"two_party\" (expected one of \
             one_party, all_party, nuanced)"
        );
        let err = parse_err(&small_with("confidence: medium", "confidence: sure"));
        assert!(
            err.starts_with("jurisdictions.EEA.confidence: unknown value \"sure\""),
            "{err}"
        );
    }

    #[test]
    fn misspelt_field_names_the_entry_and_the_line() {
        let err = parse_err(&small_with(
            "    legal_floor: none\n",
            "    legal_flor: none\n",
        ));
        assert!(err.contains("jurisdictions.US"), "{err}");
        assert!(err.contains("legal_flor"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn missing_and_empty_version() {
        let err = parse_err(&small_with("version: \"test-1\"\n", ""));
        assert!(err.contains("missing field `version`"), "{err}");
        let err = parse_err(&small_with("version: \"test-1\"", "version: \"  \""));
        assert_eq!(err, "version: must not be empty");
    }

    #[test]
    fn not_yaml_says_where() {
        let err = parse_err("version: [\n");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn mode_order_must_match_the_code() {
        let err = parse_err(&small_with(
            "[none, notify, notify_and_allow_opt_out, explicit]",
            "[none, notify_and_allow_opt_out, notify, explicit]",
        ));
        assert!(
            err.starts_with("modes.order: expected [none, notify,"),
            "{err}"
        );
        assert!(
            err.ends_with("found [none, notify_and_allow_opt_out, notify, explicit]"),
            "{err}"
        );
    }

    #[test]
    fn resolution_order_errors() {
        let err = parse_err(&small_with(
            "[subdivision, country, group, default_unknown]",
            "[subdivision, state, default_unknown]",
        ));
        assert!(
            err.starts_with("decision_model.resolution_order[1]: unknown value \"state\""),
            "{err}"
        );
        let err = parse_err(&small_with(
            "[subdivision, country, group, default_unknown]",
            "[subdivision, country, group]",
        ));
        assert_eq!(
            err,
            "decision_model.resolution_order: must end with default_unknown"
        );
        let err = parse_err(&small_with(
            "[subdivision, country, group, default_unknown]",
            "[country, country, default_unknown]",
        ));
        assert_eq!(
            err,
            "decision_model.resolution_order: \"country\" is listed twice"
        );
    }

    #[test]
    fn escalations_are_not_in_the_schema() {
        // Their conditions are not facts the server knows: refused, not
        // parsed and ignored.
        let err = parse_err(&small_with(
            "    confidence: high\n  US-CA:",
            "    confidence: high\n    escalations:\n      voiceprint_speaker_id: explicit\n  US-CA:",
        ));
        assert!(
            err.starts_with("jurisdictions.US: unknown field `escalations`"),
            "{err}"
        );
        let err = parse_err(&small_with(
            "  default_unknown: notify_and_allow_opt_out\n",
            "  default_unknown: notify_and_allow_opt_out\n  escalations: []\n",
        ));
        assert!(
            err.starts_with("decision_model: unknown field `escalations`"),
            "{err}"
        );
        let err = parse_err(&small_with(
            "    confidence: medium\n",
            "    confidence: medium\n    if_lawful_basis_consent: explicit\n",
        ));
        assert!(
            err.starts_with("jurisdictions.EEA: unknown field `if_lawful_basis_consent`"),
            "{err}"
        );
    }

    // ---- properties ----

    fn location_strategy() -> impl Strategy<Value = Option<Location>> {
        let country = prop_oneof![
            prop::sample::select(vec!["US", "DE", "AT", "NO", "GB", "AU", "ZA", "CA", "JP"])
                .prop_map(str::to_owned),
            "[a-zA-Z]{0,3}",
            ".{0,4}",
        ];
        let subdivision = prop::option::of(prop_oneof![
            prop::sample::select(vec![
                "US-CA", "CA", "us-ny", "US-ZZ", "NSW", "AU-VIC", "DE-BY"
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z0-9-]{0,7}",
            ".{0,6}",
        ]);
        prop::option::of(
            (country, subdivision).prop_map(|(country, subdivision)| Location {
                country,
                subdivision,
            }),
        )
    }

    fn mode_strategy() -> impl Strategy<Value = ConsentMode> {
        prop::sample::select(ConsentMode::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn decide_is_total_and_never_below_a_legal_floor(
            recorder in location_strategy(),
            people in prop::collection::vec(
                (
                    location_strategy(),
                    any::<bool>(),
                    prop::option::of(prop::sample::select(Media::ALL.to_vec())),
                    any::<bool>(),
                ),
                0..8,
            ),
            min_mode in mode_strategy(),
            overrides in prop::collection::btree_map(
                prop::sample::select(vec!["US", "US-CA", "DE", "EEA", "default_unknown", "ZZ"])
                    .prop_map(str::to_owned),
                mode_strategy(),
                0..4,
            ),
            unknown_location_mode in prop::option::of(mode_strategy()),
        ) {
            let rules = builtin();
            let policy = Policy { min_mode, overrides, unknown_location_mode };
            let participants: Vec<ParticipantInput> = people
                .into_iter()
                .enumerate()
                .map(|(i, (location, internal, media, mixed))| ParticipantInput {
                    id: format!("p{i}"),
                    location,
                    internal,
                    media,
                    mixed,
                })
                .collect();
            let d = decide(rules, &policy, recorder.as_ref(), &participants);
            prop_assert_eq!(d.per_participant.len(), participants.len());
            prop_assert!(d.mode >= policy.min_mode);
            prop_assert!(d.mode >= d.recorder.legal_floor);
            prop_assert!(d.mode >= d.recorder.mode);
            for (p, (id, r)) in participants.iter().zip(&d.per_participant) {
                prop_assert_eq!(&p.id, id);
                prop_assert!(r.mode >= r.legal_floor);
                prop_assert!(d.mode >= r.legal_floor);
                prop_assert!(d.mode >= r.mode);
                // Policy never lowers below what the rules alone give as
                // floor (the company's unknown-location mode replaces the
                // rules' default, so compare only without one).
                let bare = rules.resolve_participant(&Policy::default(), p);
                prop_assert_eq!(&bare.matched, &r.matched);
                if policy.unknown_location_mode.is_none() {
                    prop_assert_eq!(bare.legal_floor, r.legal_floor);
                }
                // A subdivision never weakens its country's floor.
                if let Some(country) = rules.jurisdiction(r.matched.split('-').next().unwrap_or(""))
                    && r.matched.contains('-')
                {
                    let floors = match (p.media, p.mixed) {
                        (Some(m), _) => country.legal_floor_for(m),
                        (None, true) => Media::ALL.iter().map(|&m| country.legal_floor_for(m)).max().unwrap(),
                        (None, false) => country.legal_floor_for(DEFAULT_MEDIA),
                    };
                    prop_assert!(r.legal_floor >= floors);
                }
            }
            let any_all_party = d.recorder.all_party
                || d.per_participant.iter().any(|(_, r)| r.all_party)
                || participants.iter().any(|p| p.mixed);
            prop_assert_eq!(
                d.scope == GateScope::CallWide,
                any_all_party && d.mode > ConsentMode::None
            );
            prop_assert!(!d.reasons.is_empty());
        }
    }
}

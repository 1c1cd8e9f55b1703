//! Consent rules as data: parse and validate the rules file, resolve a
//! location to a jurisdiction, apply the company policy, and decide a call's
//! mode and gate scope.
//!
//! Everything here is pure: [`Rules::parse`] takes the file's text, the shell
//! reads the file. [`Rules::builtin`] is the copy shipped in
//! `consent/rules.yaml`.
//!
//! # Resolution
//!
//! A location resolves along the rules' `resolution_order` (shipped:
//! subdivision, country, group, default_unknown): `US-CA` has its own entry;
//! `US-XX` without one falls back to `US`; `AT` has no entry and falls to its
//! group `EEA`; anything else (or no location at all) gets `default_unknown`.
//!
//! # Policy
//!
//! Per participant: `m = overrides[code] ?? default_mode`, then
//! `mode = max(m, legal_floor, policy.min_mode)`. The company can raise a
//! mode, never lower it below the legal floor. The call's mode is the
//! strictest of every participant and the recorder.

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

/// The medium of a meeting, for entries whose rule varies by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Media {
    /// A telephone call.
    Phone,
    /// A video conference.
    Video,
    /// Speakers in one room, captured by a room device.
    InPersonRoom,
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
    /// Legal floor by medium, where it differs (not applied yet: the medium
    /// of a call is not an input).
    pub legal_floor_by_media: BTreeMap<Media, ConsentMode>,
    /// Recommended mode by medium, where it differs (not applied yet).
    pub default_mode_by_media: BTreeMap<Media, ConsentMode>,
    /// Feature that raises the mode (`voiceprint_speaker_id: explicit`).
    pub escalations: BTreeMap<String, ConsentMode>,
    /// Extra obligations (`announcement_in_recording`).
    pub requirements: Vec<String>,
    /// The data-protection regime businesses also answer to (`GDPR`).
    pub business_overlay: Option<String>,
    /// The mode needed if consent is the chosen lawful basis (GDPR).
    pub if_lawful_basis_consent: Option<ConsentMode>,
    /// Longest retention the regulator accepts, in days.
    pub retention_max_days: Option<u32>,
    /// Whether consent on file (an employee policy) may stand in for a notice.
    pub prior_consent_on_file_allowed: Option<bool>,
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
    /// Whether the entry is all-party (every party must consent).
    pub all_party: bool,
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
}

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
    /// Call-wide when any resolved jurisdiction is all-party and the mode is
    /// above `none`; else per participant.
    pub scope: GateScope,
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
}

impl Rules {
    /// Parses and validates a rules file's text. The first problem found, in
    /// file order, is returned with its place.
    pub fn parse(yaml: &str) -> Result<Rules, RulesError> {
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
    /// policy: `mode` is the entry's recommended `default_mode`. `None`, or a
    /// location no entry covers, gives `default_unknown`.
    pub fn resolve(&self, location: Option<&Location>) -> Resolution {
        self.resolve_with_codes(location).0
    }

    /// Resolves a location and applies the company policy (see [`Policy`]).
    pub fn resolve_with_policy(&self, policy: &Policy, location: Option<&Location>) -> Resolution {
        let (base, codes) = self.resolve_with_codes(location);
        apply_policy(policy, base, &codes)
    }

    /// The resolution, and the location's codes from most to least specific
    /// (for policy overrides).
    fn resolve_with_codes(&self, location: Option<&Location>) -> (Resolution, Vec<String>) {
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
                    .map(|j| (j, None)),
                Step::Country => n.country.as_deref().and_then(|c| {
                    self.jurisdictions
                        .get(c)
                        .map(|j| (j, n.subdivision.as_deref()))
                }),
                Step::Group => n.country.as_deref().and_then(|c| {
                    self.group_of(c)
                        .and_then(|g| self.jurisdictions.get(g))
                        .map(|j| (j, Some(c)))
                }),
                Step::DefaultUnknown => break,
            };
            if let Some((j, more_specific)) = found {
                return (self.entry_resolution(j, more_specific, &prefix), codes);
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
        let resolution = Resolution {
            matched: DEFAULT_UNKNOWN.to_owned(),
            mode: self.default_unknown,
            legal_floor: self.default_unknown,
            all_party: false,
            why: format!(
                "{prefix}{DEFAULT_UNKNOWN}: {why}; the rules require {} for locations they do not cover",
                self.default_unknown
            ),
        };
        (resolution, codes)
    }

    fn entry_resolution(
        &self,
        j: &Jurisdiction,
        fell_back_from: Option<&str>,
        prefix: &str,
    ) -> Resolution {
        let from = fell_back_from
            .map(|code| format!(" for {code} (no entry of its own)"))
            .unwrap_or_default();
        let media = if j.legal_floor_by_media.is_empty() && j.default_mode_by_media.is_empty() {
            ""
        } else {
            "; varies by medium (general rule applied)"
        };
        Resolution {
            matched: j.code.clone(),
            mode: j.default_mode,
            legal_floor: j.legal_floor,
            all_party: j.category == Category::AllParty,
            why: format!(
                "{prefix}{} ({}){from}: {}; legal floor {}{media}",
                j.code,
                j.name,
                j.category.as_words(),
                j.legal_floor
            ),
        }
    }
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
        .map(|p| {
            (
                p.id.clone(),
                rules.resolve_with_policy(policy, p.location.as_ref()),
            )
        })
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
    let scope = if !all_party.is_empty() && mode > ConsentMode::None {
        reasons.push(format!(
            "call-wide gate: all-party rules apply ({}); anyone present and not yet consented pauses capture of everyone",
            all_party.join(", ")
        ));
        GateScope::CallWide
    } else if all_party.is_empty() {
        reasons.push(
            "per-participant gate: no participant and not the recorder is in an all-party jurisdiction"
                .to_owned(),
        );
        GateScope::PerParticipant
    } else {
        reasons.push("per-participant gate: the mode is none, nothing to wait for".to_owned());
        GateScope::PerParticipant
    };

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

    CallDecision {
        mode,
        scope,
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

/// Only the fields the code uses; the rest of `decision_model` is prose for
/// readers (and for features not built yet) and is not checked.
#[derive(Debug, Deserialize)]
struct RawDecisionModel {
    resolution_order: Vec<String>,
    default_unknown: String,
    #[serde(default)]
    low_confidence_location: Option<String>,
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
    escalations: Entries<String>,
    #[serde(default)]
    requirements: Vec<String>,
    #[serde(default)]
    business_overlay: Option<String>,
    #[serde(default)]
    if_lawful_basis_consent: Option<String>,
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
        let media = match key.as_str() {
            "phone" => Media::Phone,
            "video" => Media::Video,
            "in_person_room" => Media::InPersonRoom,
            _ => {
                return Err(RulesError::InvalidValue {
                    place: place.to_owned(),
                    found: key.clone(),
                    expected: "phone, video, in_person_room",
                });
            }
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
            for media in [Media::Phone, Media::Video, Media::InPersonRoom] {
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
                    let media_name = match media {
                        Media::Phone => "phone",
                        Media::Video => "video",
                        Media::InPersonRoom => "in_person_room",
                    };
                    return Err(RulesError::DefaultBelowFloor {
                        place: format!("jurisdictions.{code}.{field} (for {media_name})"),
                        default_mode: recommended,
                        legal_floor: floor,
                    });
                }
            }
            check_duplicates(&at("escalations"), &raw.escalations)?;
            let mut escalations = BTreeMap::new();
            for (feature, mode) in &raw.escalations.0 {
                let place = format!("jurisdictions.{code}.escalations.{feature}");
                escalations.insert(feature.clone(), mode_at(place, mode)?);
            }
            let if_lawful_basis_consent = raw
                .if_lawful_basis_consent
                .as_deref()
                .map(|m| mode_at(at("if_lawful_basis_consent"), m))
                .transpose()?;
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
                escalations,
                requirements: raw.requirements,
                business_overlay: raw.business_overlay,
                if_lawful_basis_consent,
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
    fn builtin_rules_parse() {
        let rules = Rules::parse(Rules::builtin_text()).expect("consent/rules.yaml");
        assert!(
            rules.jurisdiction_count() >= 60,
            "{}",
            rules.jurisdiction_count()
        );
        assert!(!rules.version().is_empty());
        assert!(rules.disclaimer().starts_with("Not legal advice"));
        assert_eq!(rules.default_unknown(), ConsentMode::NotifyAndAllowOptOut);
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
            assert_eq!(r.mode, ConsentMode::NotifyAndAllowOptOut);
            assert_eq!(r.legal_floor, ConsentMode::NotifyAndAllowOptOut);
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
            Some(&loc("US", None)),
            &[
                participant("bob", Some("US-NY")),
                participant("alice", Some("US-CA")),
            ],
        );
        assert_eq!(d.mode, ConsentMode::NotifyAndAllowOptOut);
        assert_eq!(d.per_participant[0].0, "bob");
        assert_eq!(d.per_participant[0].1.mode, ConsentMode::Notify);
        assert_eq!(d.per_participant[1].1.matched, "US-CA");
        assert_eq!(d.recorder.matched, "US");
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
        assert_eq!(d.mode, ConsentMode::NotifyAndAllowOptOut);
        assert_eq!(d.recorder.matched, DEFAULT_UNKNOWN);
        assert_eq!(d.scope, GateScope::PerParticipant);
    }

    #[test]
    fn ties_name_everyone_who_requires_the_mode() {
        let d = decide(
            builtin(),
            &Policy::default(),
            Some(&loc("US", None)),
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
            Some(&loc("US", None)),
            &[
                participant("a", Some("US-NY")),
                participant("b", Some("AT")),
                participant("c", None),
            ],
        );
        assert_eq!(one_party.scope, GateScope::PerParticipant);
        assert_eq!(one_party.mode, ConsentMode::NotifyAndAllowOptOut);

        let all_party = decide(
            builtin(),
            &policy,
            Some(&loc("US", None)),
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
        let d = decide(builtin(), &Policy::default(), Some(&loc("US", None)), &[p]);
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
            Some(&loc("US", None)),
            &[participant("alice", Some("US-CA"))],
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["mode"], "notify_and_allow_opt_out");
        assert_eq!(v["scope"], "call_wide");
        assert_eq!(v["participants"][0]["id"], "alice");
        assert_eq!(v["participants"][0]["matched"], "US-CA");
        assert_eq!(v["recorder"]["matched"], "US");
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
    fn escalation_mode_is_checked() {
        let err = parse_err(&small_with(
            "    confidence: high\n  US-CA:",
            "    confidence: high\n    escalations:\n      voiceprint_speaker_id: strict\n  US-CA:",
        ));
        assert!(
            err.starts_with(
                "jurisdictions.US.escalations.voiceprint_speaker_id: unknown mode \"strict\""
            ),
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
            people in prop::collection::vec((location_strategy(), any::<bool>()), 0..8),
            min_mode in mode_strategy(),
            overrides in prop::collection::btree_map(
                prop::sample::select(vec!["US", "US-CA", "DE", "EEA", "default_unknown", "ZZ"])
                    .prop_map(str::to_owned),
                mode_strategy(),
                0..4,
            ),
        ) {
            let rules = builtin();
            let policy = Policy { min_mode, overrides };
            let participants: Vec<ParticipantInput> = people
                .into_iter()
                .enumerate()
                .map(|(i, (location, internal))| ParticipantInput {
                    id: format!("p{i}"),
                    location,
                    internal,
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
                // Policy never lowers below what the rules alone give as floor.
                let bare = rules.resolve(p.location.as_ref());
                prop_assert_eq!(bare.legal_floor, r.legal_floor);
                prop_assert_eq!(&bare.matched, &r.matched);
            }
            let any_all_party = d.recorder.all_party
                || d.per_participant.iter().any(|(_, r)| r.all_party);
            prop_assert_eq!(
                d.scope == GateScope::CallWide,
                any_all_party && d.mode > ConsentMode::None
            );
            prop_assert!(!d.reasons.is_empty());
        }
    }
}

//! Loads what consent needs at start: the rules (built in, or
//! `consent.rules_file`), the prompts (built in, or `consent.prompts_dir`),
//! and the engine settings from the config. Errors name the config key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearken_core::conference::{HoldBudget, duration_to_samples};
use hearken_core::consent::engine::{ConsentKeys, EngineConfig, HoldConfig};
use hearken_core::consent::rules::{ConsentMode, Location, Policy, Rules};
use hearken_core::dtmf::DtmfKey;
use hearken_core::prompt::PromptSet;

use tracing::{info, warn};

use crate::config::ConsentConfig;
use crate::media::sip::TelephonePrompts;
use crate::media::verbal::VerbalService;

/// Consent settings shared by every call of every worker.
#[derive(Debug)]
pub struct ConsentSetup {
    /// The rules (jurisdiction to mode).
    pub rules: Arc<Rules>,
    /// Company policy, grace period, decline policy, consent keys.
    pub engine: EngineConfig,
    /// Prompts in the configured language.
    pub prompts: Arc<PromptSet>,
    /// The same prompts in the telephone codecs, for SIP callers.
    pub telephone_prompts: Arc<TelephonePrompts>,
    /// Held audio of every call on this node together (`consent.hold_node_limit_mb`).
    pub hold_budget: Arc<HoldBudget>,
}

/// Why consent could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentSetupError {
    /// A config key has an unusable value.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The rules file could not be read or parsed.
    #[error("consent rules {path}: {message}")]
    Rules {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A prompt is missing or not usable.
    #[error("consent prompts: {0}")]
    Prompts(String),
}

/// The prompts shipped in the binary (`media/prompts/{language}/{name}.opus`):
/// `(language, name, bytes)` for every language and every name of
/// [`PROMPT_NAMES`](hearken_core::prompt::PROMPT_NAMES).
macro_rules! builtin_prompts {
    ($($lang:literal),+) => {
        &[$(
            ($lang, "notice", include_bytes!(concat!("../../media/prompts/", $lang, "/notice.opus"))),
            ($lang, "consent_request", include_bytes!(concat!("../../media/prompts/", $lang, "/consent_request.opus"))),
            ($lang, "thanks", include_bytes!(concat!("../../media/prompts/", $lang, "/thanks.opus"))),
            ($lang, "stopped", include_bytes!(concat!("../../media/prompts/", $lang, "/stopped.opus"))),
        )+]
    };
}
const BUILTIN_PROMPTS: &[(&str, &str, &[u8])] = builtin_prompts!("en", "es", "fr", "de");

/// Loads the rules named by `consent.rules_file` (unset: the built-in rules).
pub fn load_rules(config: &ConsentConfig) -> Result<Rules, ConsentSetupError> {
    let Some(path) = &config.rules_file else {
        return Ok(Rules::builtin());
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConsentSetupError::Rules {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    Rules::parse(&text).map_err(|e| ConsentSetupError::Rules {
        path: shown,
        message: e.to_string(),
    })
}

/// Parses a mode named by a config key.
pub fn parse_mode(key: &'static str, text: &str) -> Result<ConsentMode, ConsentSetupError> {
    text.parse()
        .map_err(
            |e: hearken_core::consent::rules::ParseModeError| ConsentSetupError::Invalid {
                key,
                message: e.to_string(),
            },
        )
}

fn parse_key(key: &'static str, text: &str) -> Result<DtmfKey, ConsentSetupError> {
    let mut chars = text.trim().chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => DtmfKey::from_char(c).ok_or_else(|| ConsentSetupError::Invalid {
            key,
            message: format!("{text:?} is not a DTMF key (0-9, *, #, A-D)"),
        }),
        _ => Err(ConsentSetupError::Invalid {
            key,
            message: format!("{text:?} must be exactly one DTMF key (0-9, *, #, A-D)"),
        }),
    }
}

/// Everything the media workers need for consent.
pub fn setup(config: &ConsentConfig) -> Result<ConsentSetup, ConsentSetupError> {
    let rules = load_rules(config)?;
    let min_mode = config.min_mode;
    let recorder_location = if config.recorder_location.trim().is_empty() {
        None
    } else {
        Some(Location::from_code(&config.recorder_location).map_err(|e| {
            ConsentSetupError::Invalid {
                key: "consent.recorder_location",
                message: e.to_string(),
            }
        })?)
    };
    let decline_policy = config.decline_policy;
    let agree = parse_key("consent.agree_digit", &config.agree_digit)?;
    let decline = parse_key("consent.decline_digit", &config.decline_digit)?;
    if agree == decline {
        return Err(ConsentSetupError::Invalid {
            key: "consent.decline_digit",
            message: "must differ from consent.agree_digit".into(),
        });
    }
    let prompts = Arc::new(load_prompts(
        &config.language,
        config.prompts_dir.as_deref(),
    )?);
    Ok(ConsentSetup {
        rules: Arc::new(rules),
        engine: EngineConfig {
            policy: Policy {
                min_mode,
                overrides: Default::default(),
                unknown_location_mode: config.unknown_location_mode,
            },
            recorder_location,
            grace: config.grace_period_ms.saturating_mul(48),
            decline_policy,
            keys: ConsentKeys { agree, decline },
            hold: HoldConfig {
                max_span: duration_to_samples(Duration::from_secs(config.hold_seconds)),
                under_explicit: config.hold_under_explicit,
            },
            details_wait: duration_to_samples(Duration::from_millis(config.details_wait_ms)),
            provider_notifies: config.provider_notifies,
            allow_exclude_under_all_party: config.allow_exclude_under_all_party,
        },
        telephone_prompts: Arc::new(TelephonePrompts::new(Arc::clone(&prompts))),
        prompts,
        hold_budget: Arc::new(HoldBudget::new(
            config.hold_node_limit_mb.saturating_mul(1024 * 1024),
        )),
    })
}

/// Starts the node's verbal-consent recogniser (`consent.verbal`) for
/// `consent.language`, or says why there is none: the setting is off, the
/// language has no grammar, or its model is not installed. Without it the
/// server runs on, and consent is given by key or through the API.
pub fn start_verbal(config: &ConsentConfig) -> Option<Arc<VerbalService>> {
    if !config.verbal {
        info!("verbal consent off (consent.verbal = false): consent by DTMF and the API");
        return None;
    }
    match VerbalService::start(&config.language) {
        Ok(service) => {
            info!(
                language = service.language(),
                "verbal consent on: answers to the consent request are recognised on this machine"
            );
            Some(service)
        }
        Err(e) => {
            warn!(
                language = %config.language,
                reason = %e,
                "verbal consent unavailable; consent by DTMF and the API remains"
            );
            None
        }
    }
}

/// The prompts of `language`: from `dir/{language}/{name}.opus` when `dir`
/// is given, else the ones built into the binary.
pub fn load_prompts(language: &str, dir: Option<&Path>) -> Result<PromptSet, ConsentSetupError> {
    let result = if let Some(dir) = dir {
        PromptSet::from_files(language, |name| {
            std::fs::read(dir.join(language).join(format!("{name}.opus"))).ok()
        })
    } else {
        if !BUILTIN_PROMPTS.iter().any(|(l, _, _)| *l == language) {
            return Err(ConsentSetupError::Invalid {
                key: "consent.language",
                message: format!(
                    "no built-in prompts for {language:?} (built in: en, es, fr, de); set consent.prompts_dir"
                ),
            });
        }
        PromptSet::from_files(language, |name| {
            BUILTIN_PROMPTS
                .iter()
                .find(|(l, n, _)| *l == language && *n == name)
                .map(|(_, _, bytes)| bytes.to_vec())
        })
    };
    result.map_err(|e| ConsentSetupError::Prompts(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_set_up() {
        let s = setup(&ConsentConfig::default()).unwrap();
        assert_eq!(s.engine.keys.agree, DtmfKey::from_char('1').unwrap());
        assert!(s.prompts.notice.duration.as_secs_f64() > 1.0);
        for lang in ["en", "es", "fr", "de"] {
            load_prompts(lang, None).unwrap();
        }
    }

    #[test]
    fn verbal_consent_off_or_without_a_grammar_starts_without_a_recogniser() {
        let off = ConsentConfig {
            verbal: false,
            ..ConsentConfig::default()
        };
        assert!(start_verbal(&off).is_none());
        // German prompts exist; a German grammar does not (DTMF and the API remain).
        let german = ConsentConfig {
            language: "de".into(),
            ..ConsentConfig::default()
        };
        assert!(start_verbal(&german).is_none());
    }

    #[test]
    fn errors_name_the_key() {
        type Case = (fn(&mut ConsentConfig), &'static str);
        let cases: [Case; 4] = [
            (|c| c.agree_digit = "12".into(), "consent.agree_digit"),
            (|c| c.decline_digit = "1".into(), "consent.decline_digit"),
            (
                |c| c.recorder_location = "Narnia".into(),
                "consent.recorder_location",
            ),
            (|c| c.language = "xx".into(), "consent.language"),
        ];
        for (change, key) in cases {
            let mut c = ConsentConfig::default();
            change(&mut c);
            let err = setup(&c).err().unwrap().to_string();
            assert!(err.contains(key), "{err}");
        }
        let c = ConsentConfig {
            rules_file: Some("/nonexistent/rules.yaml".into()),
            ..ConsentConfig::default()
        };
        assert!(
            setup(&c)
                .err()
                .unwrap()
                .to_string()
                .contains("/nonexistent/rules.yaml")
        );
    }
}

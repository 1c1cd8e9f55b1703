//! Loads what consent needs at start: the rules (built in, or
//! `consent.rules_file`), the prompts (built in, or `consent.prompts_dir`),
//! and the engine settings from the config. Errors name the config key.

use std::path::Path;
use std::sync::Arc;

use crate::config::ConsentConfig;
use crate::core::consent::engine::{DeclinePolicy, EngineConfig};
use crate::core::consent::rules::{ConsentMode, Location, Policy, Rules};
use crate::core::dtmf::DtmfKey;
use crate::core::prompt::PromptSet;
use crate::rtc::worker::ConsentSetup;

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

/// The prompts shipped in the binary (`media/prompts/`), by language.
const BUILTIN_PROMPTS: &[(&str, &str, &[u8])] = &[
    (
        "en",
        "notice",
        include_bytes!("../media/prompts/en/notice.opus"),
    ),
    (
        "en",
        "consent_request",
        include_bytes!("../media/prompts/en/consent_request.opus"),
    ),
    (
        "en",
        "thanks",
        include_bytes!("../media/prompts/en/thanks.opus"),
    ),
    (
        "en",
        "stopped",
        include_bytes!("../media/prompts/en/stopped.opus"),
    ),
    (
        "es",
        "notice",
        include_bytes!("../media/prompts/es/notice.opus"),
    ),
    (
        "es",
        "consent_request",
        include_bytes!("../media/prompts/es/consent_request.opus"),
    ),
    (
        "es",
        "thanks",
        include_bytes!("../media/prompts/es/thanks.opus"),
    ),
    (
        "es",
        "stopped",
        include_bytes!("../media/prompts/es/stopped.opus"),
    ),
    (
        "fr",
        "notice",
        include_bytes!("../media/prompts/fr/notice.opus"),
    ),
    (
        "fr",
        "consent_request",
        include_bytes!("../media/prompts/fr/consent_request.opus"),
    ),
    (
        "fr",
        "thanks",
        include_bytes!("../media/prompts/fr/thanks.opus"),
    ),
    (
        "fr",
        "stopped",
        include_bytes!("../media/prompts/fr/stopped.opus"),
    ),
    (
        "de",
        "notice",
        include_bytes!("../media/prompts/de/notice.opus"),
    ),
    (
        "de",
        "consent_request",
        include_bytes!("../media/prompts/de/consent_request.opus"),
    ),
    (
        "de",
        "thanks",
        include_bytes!("../media/prompts/de/thanks.opus"),
    ),
    (
        "de",
        "stopped",
        include_bytes!("../media/prompts/de/stopped.opus"),
    ),
];

/// Loads the rules named by `consent.rules_file` (empty: the built-in rules).
pub fn load_rules(config: &ConsentConfig) -> Result<Rules, ConsentSetupError> {
    if config.rules_file.trim().is_empty() {
        return Ok(Rules::builtin());
    }
    let path = config.rules_file.clone();
    let text = std::fs::read_to_string(&path).map_err(|e| ConsentSetupError::Rules {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Rules::parse(&text).map_err(|e| ConsentSetupError::Rules {
        path,
        message: e.to_string(),
    })
}

/// Parses a mode named by a config key.
pub fn parse_mode(key: &'static str, text: &str) -> Result<ConsentMode, ConsentSetupError> {
    text.parse()
        .map_err(
            |e: crate::core::consent::rules::ParseModeError| ConsentSetupError::Invalid {
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
    let min_mode = parse_mode("consent.min_mode", &config.min_mode)?;
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
    let decline_policy: DeclinePolicy =
        config
            .decline_policy
            .parse()
            .map_err(|message| ConsentSetupError::Invalid {
                key: "consent.decline_policy",
                message,
            })?;
    let agree = parse_key("consent.agree_digit", &config.agree_digit)?;
    let decline = parse_key("consent.decline_digit", &config.decline_digit)?;
    if agree == decline {
        return Err(ConsentSetupError::Invalid {
            key: "consent.decline_digit",
            message: "must differ from consent.agree_digit".into(),
        });
    }
    let prompts = load_prompts(&config.language, &config.prompts_dir)?;
    Ok(ConsentSetup {
        rules: Arc::new(rules),
        engine: EngineConfig {
            policy: Policy {
                min_mode,
                overrides: Default::default(),
            },
            recorder_location,
            grace: config.grace_period_ms.saturating_mul(48),
            decline_policy,
        },
        prompts: Arc::new(prompts),
        agree,
        decline,
        pending_details: Default::default(),
    })
}

/// The prompts of `language`: from `dir/{language}/{name}.opus` when `dir`
/// is set, else the ones built into the binary.
pub fn load_prompts(language: &str, dir: &Path) -> Result<PromptSet, ConsentSetupError> {
    let result = if dir.as_os_str().is_empty() {
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
    } else {
        PromptSet::from_files(language, |name| {
            std::fs::read(dir.join(language).join(format!("{name}.opus"))).ok()
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
        assert_eq!(s.agree, DtmfKey::from_char('1').unwrap());
        assert!(s.prompts.notice.duration.as_secs_f64() > 1.0);
        for lang in ["en", "es", "fr", "de"] {
            load_prompts(lang, Path::new("")).unwrap();
        }
    }

    #[test]
    fn errors_name_the_key() {
        type Case = (fn(&mut ConsentConfig), &'static str);
        let cases: [Case; 6] = [
            (|c| c.min_mode = "loud".into(), "consent.min_mode"),
            (
                |c| c.decline_policy = "shrug".into(),
                "consent.decline_policy",
            ),
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
            rules_file: "/nonexistent/rules.yaml".into(),
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

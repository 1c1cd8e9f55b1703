//! Company recording settings: the company's domains, which meeting types it
//! records, the method per provider, the bot's address and each user's
//! capture setting.
//!
//! The same fields in JSON or TOML:
//!
//! ```toml
//! company_domains = ["example.com"]   # required
//! include_subdomains = true           # default false
//! record_internal = false             # required
//! record_external = true              # required
//! bot_address = "assistant@hearken.example"  # optional: no manual invites without it
//!
//! [providers]                         # required; a provider left out is disabled
//! zoom = "assistant"                  # native | assistant | disabled
//! google_meet = "assistant"
//! teams = "native"
//! webex = "disabled"
//!
//! [users]                             # people not listed are not recorded users
//! "alice@example.com" = "always"      # always | external_only | never | manual_only
//! ```
//!
//! Both formats are read into one JSON value and checked field by field, so
//! an error names the field (`users."bob@example.com"`, `providers.skype`)
//! the same way whatever the format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::links::Provider;
use super::meeting::{email_domain, normalize_email};

/// A user's data-capture setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// Record every eligible meeting, internal or external.
    Always,
    /// Record external meetings only.
    ExternalOnly,
    /// Never record: a meeting with this user on it is not recorded, even on
    /// a manual invite.
    Never,
    /// Record only when the bot is invited to the meeting.
    ManualOnly,
}

impl Capture {
    /// Every setting, in the order the docs list them.
    pub const ALL: [Capture; 4] = [
        Capture::Always,
        Capture::ExternalOnly,
        Capture::Never,
        Capture::ManualOnly,
    ];

    /// The settings-file spelling (`external_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capture::Always => "always",
            Capture::ExternalOnly => "external_only",
            Capture::Never => "never",
            Capture::ManualOnly => "manual_only",
        }
    }

    /// The setting with this spelling.
    pub fn from_key(key: &str) -> Option<Capture> {
        Capture::ALL.into_iter().find(|c| c.as_str() == key)
    }
}

/// How the company records meetings of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderSetting {
    /// The provider pushes the media; no participant is added.
    Native,
    /// The bot joins as a visible participant and plays the prompts.
    Assistant,
    /// Not recorded: meetings on this provider are imported as metadata only.
    Disabled,
}

impl ProviderSetting {
    /// Every setting.
    pub const ALL: [ProviderSetting; 3] = [
        ProviderSetting::Native,
        ProviderSetting::Assistant,
        ProviderSetting::Disabled,
    ];

    /// The settings-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderSetting::Native => "native",
            ProviderSetting::Assistant => "assistant",
            ProviderSetting::Disabled => "disabled",
        }
    }

    /// The setting with this spelling.
    pub fn from_key(key: &str) -> Option<ProviderSetting> {
        ProviderSetting::ALL.into_iter().find(|s| s.as_str() == key)
    }
}

/// The format of a settings text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsFormat {
    /// JSON.
    Json,
    /// TOML.
    Toml,
}

/// Why settings were rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The text is not valid JSON or TOML.
    #[error("not valid {format}: {detail}")]
    Syntax {
        /// `JSON` or `TOML`.
        format: &'static str,
        /// The parser's message, with its line and column.
        detail: String,
    },
    /// A field is missing, unknown, of the wrong type or has a bad value.
    #[error("{field}: {problem}")]
    Field {
        /// The field's path (`users."bob@example.com"`, `company_domains[1]`).
        field: String,
        /// What is wrong, in words.
        problem: String,
    },
}

/// The company's recording settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// The company's email domains, lower-case.
    pub company_domains: Vec<String>,
    /// Whether `eu.example.com` counts as `example.com`.
    pub include_subdomains: bool,
    /// Whether internal meetings are recorded automatically.
    pub record_internal: bool,
    /// Whether external meetings are recorded automatically.
    pub record_external: bool,
    /// The address that invites the bot (lower-case), if any.
    pub bot_address: Option<String>,
    /// Method per provider; a provider not listed is disabled.
    pub providers: BTreeMap<Provider, ProviderSetting>,
    /// Capture setting per user (lower-case email); people not listed are
    /// not recorded users.
    pub users: BTreeMap<String, Capture>,
}

impl Settings {
    /// Parses settings in the given format.
    pub fn parse(text: &str, format: SettingsFormat) -> Result<Settings, SettingsError> {
        match format {
            SettingsFormat::Json => Settings::from_json(text),
            SettingsFormat::Toml => Settings::from_toml(text),
        }
    }

    /// Parses JSON settings.
    pub fn from_json(text: &str) -> Result<Settings, SettingsError> {
        let value: Value = serde_json::from_str(text).map_err(|e| SettingsError::Syntax {
            format: "JSON",
            detail: e.to_string(),
        })?;
        Settings::from_value(&value)
    }

    /// Parses TOML settings.
    pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
        let value: Value = toml::from_str(text).map_err(|e| SettingsError::Syntax {
            format: "TOML",
            detail: e.message().to_owned() + &toml_place(text, e.span()),
        })?;
        Settings::from_value(&value)
    }

    /// Checks settings already read into a JSON value (for example a section
    /// of a larger config).
    pub fn from_value(value: &Value) -> Result<Settings, SettingsError> {
        let root = value.as_object().ok_or_else(|| {
            field(
                "(top level)",
                format!("expected a table/object, found {}", kind(value)),
            )
        })?;
        if let Some(key) = root.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(field(
                key,
                format!("unknown field (expected one of {})", FIELDS.join(", ")),
            ));
        }
        let company_domains = domains(require(root, "company_domains")?)?;
        let include_subdomains = match root.get("include_subdomains") {
            None => false,
            Some(v) => boolean("include_subdomains", v)?,
        };
        let record_internal = boolean("record_internal", require(root, "record_internal")?)?;
        let record_external = boolean("record_external", require(root, "record_external")?)?;
        let bot_address =
            match root.get("bot_address") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(normalize_email(s).ok_or_else(|| {
                    field("bot_address", format!("{s:?} is not an email address"))
                })?),
                Some(other) => {
                    return Err(field(
                        "bot_address",
                        format!("expected an email address, found {}", kind(other)),
                    ));
                }
            };
        let providers = providers(require(root, "providers")?)?;
        let users = match root.get("users") {
            None => BTreeMap::new(),
            Some(v) => users(v)?,
        };
        Ok(Settings {
            company_domains,
            include_subdomains,
            record_internal,
            record_external,
            bot_address,
            providers,
            users,
        })
    }

    /// Whether `domain` is one of the company's (case-insensitive; a
    /// subdomain counts when `include_subdomains`).
    pub fn is_company_domain(&self, domain: &str) -> bool {
        let domain = domain.trim().trim_end_matches('.').to_lowercase();
        self.company_domains.iter().any(|d| {
            domain == *d
                || (self.include_subdomains
                    && domain.len() > d.len()
                    && domain.ends_with(d.as_str())
                    && domain.as_bytes().get(domain.len() - d.len() - 1) == Some(&b'.'))
        })
    }

    /// Whether this email address is at one of the company's domains.
    pub fn is_company_email(&self, email: &str) -> bool {
        normalize_email(email).is_some_and(|e| self.is_company_domain(email_domain(&e)))
    }

    /// The capture setting of a user, `None` when not listed.
    pub fn capture(&self, email: &str) -> Option<Capture> {
        let email = normalize_email(email)?;
        self.users.get(&email).copied()
    }

    /// How meetings of `provider` are recorded (`Disabled` when not listed).
    pub fn provider(&self, provider: Provider) -> ProviderSetting {
        self.providers
            .get(&provider)
            .copied()
            .unwrap_or(ProviderSetting::Disabled)
    }

    /// Whether `email` is the bot's address.
    pub fn is_bot(&self, email: &str) -> bool {
        match (&self.bot_address, normalize_email(email)) {
            (Some(bot), Some(email)) => *bot == email,
            _ => false,
        }
    }
}

/// The top-level fields.
const FIELDS: &[&str] = &[
    "company_domains",
    "include_subdomains",
    "record_internal",
    "record_external",
    "bot_address",
    "providers",
    "users",
];

fn field(name: &str, problem: String) -> SettingsError {
    SettingsError::Field {
        field: name.to_owned(),
        problem,
    }
}

fn require<'a>(root: &'a Map<String, Value>, name: &str) -> Result<&'a Value, SettingsError> {
    root.get(name)
        .ok_or_else(|| field(name, "missing (it is required)".to_owned()))
}

fn boolean(name: &str, value: &Value) -> Result<bool, SettingsError> {
    value.as_bool().ok_or_else(|| {
        field(
            name,
            format!("expected true or false, found {}", kind(value)),
        )
    })
}

fn domains(value: &Value) -> Result<Vec<String>, SettingsError> {
    let list = value.as_array().ok_or_else(|| {
        field(
            "company_domains",
            format!("expected a list of domains, found {}", kind(value)),
        )
    })?;
    let mut out: Vec<String> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("company_domains[{i}]");
        let raw = item
            .as_str()
            .ok_or_else(|| field(&at, format!("expected a domain, found {}", kind(item))))?;
        let domain = raw.trim().trim_end_matches('.').to_lowercase();
        let valid = !domain.is_empty()
            && !domain.starts_with(['.', '-'])
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(field(
                &at,
                format!("{raw:?} is not a domain (write it like example.com, without @)"),
            ));
        }
        if !out.contains(&domain) {
            out.push(domain);
        }
    }
    Ok(out)
}

fn providers(value: &Value) -> Result<BTreeMap<Provider, ProviderSetting>, SettingsError> {
    let map = value.as_object().ok_or_else(|| {
        field(
            "providers",
            format!(
                "expected a table of provider = method, found {}",
                kind(value)
            ),
        )
    })?;
    let keys: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
    let methods: Vec<&str> = ProviderSetting::ALL.iter().map(|s| s.as_str()).collect();
    let mut out = BTreeMap::new();
    for (key, v) in map {
        let at = format!("providers.{key}");
        let provider = Provider::from_key(key).ok_or_else(|| {
            field(
                &at,
                format!("unknown provider (expected one of {})", keys.join(", ")),
            )
        })?;
        let setting = v
            .as_str()
            .and_then(ProviderSetting::from_key)
            .ok_or_else(|| {
                field(
                    &at,
                    format!(
                        "{} is not a method (expected one of {})",
                        shown(v),
                        methods.join(", ")
                    ),
                )
            })?;
        out.insert(provider, setting);
    }
    Ok(out)
}

fn users(value: &Value) -> Result<BTreeMap<String, Capture>, SettingsError> {
    let map = value.as_object().ok_or_else(|| {
        field(
            "users",
            format!("expected a table of email = setting, found {}", kind(value)),
        )
    })?;
    let settings: Vec<&str> = Capture::ALL.iter().map(|c| c.as_str()).collect();
    let mut out = BTreeMap::new();
    for (key, v) in map {
        let at = format!("users.{key:?}");
        let email =
            normalize_email(key).ok_or_else(|| field(&at, "is not an email address".to_owned()))?;
        let capture = v.as_str().and_then(Capture::from_key).ok_or_else(|| {
            field(
                &at,
                format!(
                    "{} is not a capture setting (expected one of {})",
                    shown(v),
                    settings.join(", ")
                ),
            )
        })?;
        if out.insert(email.clone(), capture).is_some() {
            return Err(field(
                &at,
                format!("{email} is listed twice (addresses are case-insensitive)"),
            ));
        }
    }
    Ok(out)
}

/// What a JSON value is, in words.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// A value as quoted in an error.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => kind(other).to_owned(),
    }
}

/// ` at line L, column C` for a TOML error span.
fn toml_place(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (at line {line}, column {column})")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
company_domains = ["Example.com", "example.org"]
include_subdomains = true
record_internal = false
record_external = true
bot_address = "Assistant@Hearken.example"

[providers]
zoom = "assistant"
google_meet = "assistant"
teams = "native"
webex = "disabled"

[users]
"Alice@Example.com" = "always"
"bob@example.com" = "external_only"
"dave@example.com" = "never"
"carol@eu.example.com" = "manual_only"
"#;

    #[test]
    fn toml_and_json_give_the_same_settings() {
        let toml = Settings::from_toml(TOML).unwrap();
        let json = Settings::from_json(
            r#"{"company_domains": ["Example.com", "example.org"], "include_subdomains": true,
                "record_internal": false, "record_external": true,
                "bot_address": "Assistant@Hearken.example",
                "providers": {"zoom": "assistant", "google_meet": "assistant", "teams": "native", "webex": "disabled"},
                "users": {"Alice@Example.com": "always", "bob@example.com": "external_only",
                          "dave@example.com": "never", "carol@eu.example.com": "manual_only"}}"#,
        )
        .unwrap();
        assert_eq!(toml, json);
        assert_eq!(toml.company_domains, vec!["example.com", "example.org"]);
        assert_eq!(
            toml.bot_address.as_deref(),
            Some("assistant@hearken.example")
        );
        assert_eq!(toml.capture("ALICE@example.COM"), Some(Capture::Always));
        assert_eq!(toml.capture("erin@partner.org"), None);
        assert_eq!(toml.provider(Provider::Teams), ProviderSetting::Native);
        assert!(toml.is_bot("mailto:ASSISTANT@hearken.example"));
    }

    #[test]
    fn domains_match_case_insensitively_and_subdomains_when_configured() {
        let mut s = Settings::from_toml(TOML).unwrap();
        assert!(s.is_company_domain("EXAMPLE.COM"));
        assert!(s.is_company_domain("eu.example.com"));
        assert!(s.is_company_domain("a.b.example.org"));
        assert!(!s.is_company_domain("notexample.com"));
        assert!(!s.is_company_domain("example.com.evil.net"));
        s.include_subdomains = false;
        assert!(!s.is_company_domain("eu.example.com"));
        assert!(s.is_company_email("Carol@Example.Com"));
        assert!(!s.is_company_email("not an email"));
    }

    #[test]
    fn a_provider_left_out_is_disabled() {
        let s = Settings::from_json(
            r#"{"company_domains": ["example.com"], "record_internal": true, "record_external": true, "providers": {"zoom": "native"}}"#,
        )
        .unwrap();
        assert_eq!(s.provider(Provider::Zoom), ProviderSetting::Native);
        assert_eq!(s.provider(Provider::Webex), ProviderSetting::Disabled);
        assert!(!s.include_subdomains);
        assert!(s.users.is_empty());
        assert_eq!(s.bot_address, None);
    }

    #[test]
    fn errors_name_the_field() {
        let base = r#""company_domains": ["example.com"], "record_internal": true, "record_external": true, "providers": {"zoom": "native"}"#;
        let cases: &[(&str, &str)] = &[
            ("{}", "company_domains: missing (it is required)"),
            ("[]", "(top level): expected a table/object, found a list"),
            (
                r#"{"company_domains": "example.com"}"#,
                "company_domains: expected a list of domains, found a string",
            ),
            (
                r#"{"company_domains": ["example.com", "@acme.com"]}"#,
                r#"company_domains[1]: "@acme.com" is not a domain (write it like example.com, without @)"#,
            ),
            (
                r#"{"company_domains": ["example.com"], "record_internal": "yes"}"#,
                "record_internal: expected true or false, found a string",
            ),
            (
                &format!(r#"{{{base}, "users": {{"bob@example.com": "sometimes"}}}}"#),
                r#"users."bob@example.com": "sometimes" is not a capture setting (expected one of always, external_only, never, manual_only)"#,
            ),
            (
                &format!(r#"{{{base}, "users": {{"bob": "always"}}}}"#),
                r#"users."bob": is not an email address"#,
            ),
            (
                &format!(
                    r#"{{{base}, "users": {{"bob@example.com": "always", "BOB@example.com": "never"}}}}"#
                ),
                r#"users."bob@example.com": bob@example.com is listed twice (addresses are case-insensitive)"#,
            ),
            (
                r#"{"company_domains": ["example.com"], "record_internal": true, "record_external": true, "providers": {"skype": "native"}}"#,
                "providers.skype: unknown provider (expected one of zoom, google_meet, teams, webex)",
            ),
            (
                r#"{"company_domains": ["example.com"], "record_internal": true, "record_external": true, "providers": {"zoom": "bot"}}"#,
                r#"providers.zoom: "bot" is not a method (expected one of native, assistant, disabled)"#,
            ),
            (
                &format!(r#"{{{base}, "bot_address": "assistant"}}"#),
                r#"bot_address: "assistant" is not an email address"#,
            ),
            (
                &format!(r#"{{{base}, "record_everything": true}}"#),
                "record_everything: unknown field (expected one of company_domains, include_subdomains, record_internal, record_external, bot_address, providers, users)",
            ),
        ];
        // Unknown fields are reported before missing ones, so the last case
        // is checked on its own.
        for (text, want) in cases {
            let err = Settings::from_json(text).unwrap_err();
            assert_eq!(err.to_string(), *want, "{text}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = Settings::from_toml("company_domains = [\"example.com\"\nrecord_internal = ")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("not valid TOML: "), "{text}");
        assert!(text.contains("line "), "{text}");
        let err = Settings::from_json("{\"company_domains\": [}").unwrap_err();
        assert!(err.to_string().starts_with("not valid JSON: "), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}

//! The decision: is this meeting recorded, how, and why.
//!
//! [`decide`] is a pure, total function of a [`Meeting`] and the
//! [`Settings`]. The rules, in the order they are checked (the first that
//! settles the meeting wins, and every outcome carries its reasons):
//!
//! 1. A cancelled meeting is skipped.
//! 2. A participating user (organizer or attendee who has not declined)
//!    whose capture setting is `never` blocks the meeting. A manual invite
//!    never overrides this.
//! 3. Internal or external: internal when every invitee (organizer and
//!    attendees; rooms, resources and the bot left out) has an email at a
//!    company domain (case-insensitive, subdomains if configured); otherwise
//!    external. An invitee without an email address makes it external.
//! 4. At least one recorded user (a participating person listed under
//!    `users` with a setting other than `never`) must be on the meeting,
//!    otherwise it is skipped, manual invite or not.
//! 5. Manual invite (the bot's address is an attendee, or the source says
//!    the bot was invited): eligible even if private, internal-excluded or
//!    external-excluded, and whatever the recorded users' settings
//!    (`always`, `external_only` and `manual_only` all accept a manual
//!    invite). Without a manual invite:
//!    - a private meeting is skipped (not recorded automatically);
//!    - an internal meeting is skipped unless `record_internal`;
//!    - an external meeting is skipped unless `record_external`;
//!    - some recorded user's setting must allow this meeting type: `always`
//!      any, `external_only` external only, `manual_only` none.
//! 6. An eligible meeting with no supported conferencing link (a physical
//!    room, a phone number, an unknown provider, or only providers that are
//!    disabled) is imported as metadata only.
//! 7. Otherwise it is recorded with the method set for the provider of the
//!    first usable link (`native` or `assistant`).
//!
//! Consent is not decided here: a recorded meeting still needs the consent
//! its participants' jurisdictions require, which the consent engine
//! enforces at call time (a manual invite does not override it either).
//! Skipped, blocked and not-eligible meetings are not imported at all, not
//! even as metadata.

use serde::Serialize;

use super::links::{ConferenceLink, Provider};
use super::meeting::{Attendee, Meeting, Response, email_domain};
use super::settings::{Capture, ProviderSetting, Settings};

/// How a recorded meeting is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The provider pushes the media; no participant is added.
    Native,
    /// The bot joins as a visible participant and plays the prompts.
    Assistant,
}

impl Method {
    /// `native` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Native => "native",
            Method::Assistant => "assistant",
        }
    }
}

/// What the consent engine should know about the people on a recorded
/// meeting. The consent mode itself is decided at call time from each
/// participant's location; this only says whether outsiders are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentHint {
    /// Everyone invited is at a company domain.
    Internal,
    /// Someone invited is outside the company: their consent follows the law
    /// where they are.
    External,
}

impl ConsentHint {
    /// `internal` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentHint::Internal => "internal",
            ConsentHint::External => "external",
        }
    }
}

/// The policy's answer for one meeting. Every variant carries `reasons`:
/// plain-word sentences in the order the rules were checked; the last one is
/// the reason that settled it ([`Decision::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Record the meeting.
    Record {
        /// How.
        method: Method,
        /// Whose link is used.
        provider: Provider,
        /// Internal or external, for the consent engine.
        consent_mode_hint: ConsentHint,
        /// Why.
        reasons: Vec<String>,
    },
    /// Import date, time and participants; do not record.
    MetadataOnly {
        /// Why.
        reasons: Vec<String>,
    },
    /// Do not import or record.
    Skip {
        /// Why.
        reasons: Vec<String>,
    },
    /// A participating user's `never` setting forbids recording.
    Blocked {
        /// That user's email (the first one, if several).
        user: String,
        /// Why.
        reasons: Vec<String>,
    },
}

impl Decision {
    /// `record`, `metadata_only`, `skip` or `blocked`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Record { .. } => "record",
            Decision::MetadataOnly { .. } => "metadata_only",
            Decision::Skip { .. } => "skip",
            Decision::Blocked { .. } => "blocked",
        }
    }

    /// The method, for a recorded meeting.
    pub fn method(&self) -> Option<Method> {
        match self {
            Decision::Record { method, .. } => Some(*method),
            _ => None,
        }
    }

    /// All reasons, in order.
    pub fn reasons(&self) -> &[String] {
        match self {
            Decision::Record { reasons, .. }
            | Decision::MetadataOnly { reasons }
            | Decision::Skip { reasons }
            | Decision::Blocked { reasons, .. } => reasons,
        }
    }

    /// The reason that settled the decision (the last one).
    pub fn reason(&self) -> &str {
        self.reasons().last().map_or("", String::as_str)
    }
}

/// Internal or external, and who made it external.
enum Kind {
    Internal,
    External { outsiders: Vec<String> },
}

/// Decides whether and how `meeting` is recorded under `settings`.
pub fn decide(meeting: &Meeting, settings: &Settings) -> Decision {
    let mut reasons = Vec::new();
    if meeting.cancelled {
        reasons.push("the meeting is cancelled".to_owned());
        return Decision::Skip { reasons };
    }

    let bot_invited = meeting.bot_invited
        || meeting
            .attendees
            .iter()
            .any(|a| a.email.as_deref().is_some_and(|e| settings.is_bot(e)));
    let people = invitees(meeting, settings);
    let participating: Vec<&Attendee> = people
        .iter()
        .copied()
        .filter(|a| a.response != Response::Declined)
        .collect();

    // Rule 2: a participating `never` user blocks the meeting.
    let never: Vec<&str> = participating
        .iter()
        .filter_map(|a| a.email.as_deref())
        .filter(|e| settings.capture(e) == Some(Capture::Never))
        .collect();
    if let Some(first) = never.first() {
        let who = match never.len() {
            1 => format!("{first} has capture setting never"),
            _ => format!("{} have capture setting never", never.join(", ")),
        };
        if bot_invited {
            reasons.push(manual_invite(meeting, settings));
            reasons.push(format!(
                "{who}: a manual invite never overrides that, the meeting is not recorded"
            ));
        } else {
            reasons.push(format!("{who}: the meeting is not recorded"));
        }
        return Decision::Blocked {
            user: (*first).to_owned(),
            reasons,
        };
    }

    // Rule 3: internal or external.
    let kind = classify(&people, settings);
    match &kind {
        Kind::Internal => reasons.push("internal: every invitee is at a company domain".to_owned()),
        Kind::External { outsiders } => reasons.push(format!(
            "external: {} {} not at a company domain",
            list(outsiders),
            if outsiders.len() == 1 { "is" } else { "are" }
        )),
    }
    let external = matches!(kind, Kind::External { .. });

    // Rule 4: a recorded user must be on the meeting.
    let recorded: Vec<(&str, Capture)> = participating
        .iter()
        .filter_map(|a| {
            let email = a.email.as_deref()?;
            Some((email, settings.capture(email)?))
        })
        .collect();
    let Some(&(first_email, first_capture)) = recorded.first() else {
        if bot_invited {
            reasons.push(manual_invite(meeting, settings));
        }
        reasons.push(
            "no recorded user is on the meeting (nobody on it is listed under users)".to_owned(),
        );
        return Decision::Skip { reasons };
    };

    // Rule 5: eligibility.
    if bot_invited {
        reasons.push(manual_invite(meeting, settings));
        if meeting.private {
            reasons.push("private, but the manual invite overrides that".to_owned());
        }
        if !external && !settings.record_internal {
            reasons.push(
                "internal meetings are not recorded automatically (record_internal = false), \
                 but the manual invite overrides that"
                    .to_owned(),
            );
        }
        if external && !settings.record_external {
            reasons.push(
                "external meetings are not recorded automatically (record_external = false), \
                 but the manual invite overrides that"
                    .to_owned(),
            );
        }
        reasons.push(format!(
            "recorded user on the meeting: {first_email} ({}){}",
            first_capture.as_str(),
            more(recorded.len())
        ));
    } else {
        if meeting.private {
            reasons.push(
                "private: private meetings are not recorded automatically \
                 (invite the bot to record this one)"
                    .to_owned(),
            );
            return Decision::Skip { reasons };
        }
        if !external && !settings.record_internal {
            reasons.push(
                "the company does not record internal meetings (record_internal = false)"
                    .to_owned(),
            );
            return Decision::Skip { reasons };
        }
        if external && !settings.record_external {
            reasons.push(
                "the company does not record external meetings (record_external = false)"
                    .to_owned(),
            );
            return Decision::Skip { reasons };
        }
        let eligible: Vec<(&str, Capture)> = recorded
            .iter()
            .copied()
            .filter(|(_, c)| match c {
                Capture::Always => true,
                Capture::ExternalOnly => external,
                Capture::ManualOnly | Capture::Never => false,
            })
            .collect();
        match eligible.first() {
            Some((email, capture)) => reasons.push(format!(
                "recorded user: {email} ({}){}",
                capture.as_str(),
                more(eligible.len())
            )),
            None => {
                for (email, capture) in &recorded {
                    reasons.push(match capture {
                        Capture::ExternalOnly => {
                            format!("{email} is external_only and the meeting is internal")
                        }
                        Capture::ManualOnly => {
                            format!("{email} is manual_only: recorded only when the bot is invited")
                        }
                        Capture::Always | Capture::Never => {
                            format!("{email} is {}", capture.as_str())
                        }
                    });
                }
                reasons.push(
                    "no recorded user's setting allows recording this meeting automatically"
                        .to_owned(),
                );
                return Decision::Skip { reasons };
            }
        }
    }

    // Rules 6 and 7: a usable conferencing link.
    let hint = if external {
        ConsentHint::External
    } else {
        ConsentHint::Internal
    };
    match usable_link(&meeting.links, settings) {
        Some((link, method)) => {
            reasons.push(format!(
                "{} link in {}; {} is set to {}: {}",
                link.provider.display_name(),
                link.source,
                link.provider.as_str(),
                method.as_str(),
                match method {
                    Method::Native => "the provider sends the media, no participant is added",
                    Method::Assistant => {
                        "the bot joins as a visible participant and plays the prompts"
                    }
                }
            ));
            Decision::Record {
                method,
                provider: link.provider,
                consent_mode_hint: hint,
                reasons,
            }
        }
        None => {
            let mut disabled: Vec<&str> = Vec::new();
            for link in &meeting.links {
                if !disabled.contains(&link.provider.as_str()) {
                    disabled.push(link.provider.as_str());
                }
            }
            reasons.push(if disabled.is_empty() {
                "no Zoom, Google Meet, Teams or Webex link: metadata only (date, time, participants)"
                    .to_owned()
            } else {
                format!(
                    "{} disabled in the settings: metadata only (date, time, participants)",
                    match disabled.as_slice() {
                        [one] => format!("{one} link only, and {one} is"),
                        _ => format!("links for {}, all", disabled.join(", ")),
                    }
                )
            });
            Decision::MetadataOnly { reasons }
        }
    }
}

/// The people on the meeting: organizer then attendees, rooms/resources and
/// the bot left out, each address once (the first entry wins).
fn invitees<'a>(meeting: &'a Meeting, settings: &Settings) -> Vec<&'a Attendee> {
    let mut out: Vec<&Attendee> = Vec::new();
    for a in meeting.organizer.iter().chain(&meeting.attendees) {
        if a.is_resource() || a.email.as_deref().is_some_and(|e| settings.is_bot(e)) {
            continue;
        }
        let seen = a.email.is_some() && out.iter().any(|o| o.email == a.email);
        if !seen {
            out.push(a);
        }
    }
    out
}

/// Internal when every invitee is at a company domain.
fn classify(people: &[&Attendee], settings: &Settings) -> Kind {
    let outsiders: Vec<String> = people
        .iter()
        .filter(|a| match a.email.as_deref() {
            Some(email) => !settings.is_company_domain(email_domain(email)),
            None => true,
        })
        .map(|a| a.label())
        .collect();
    if outsiders.is_empty() {
        Kind::Internal
    } else {
        Kind::External { outsiders }
    }
}

/// The first link whose provider is not disabled, with its method.
fn usable_link<'a>(
    links: &'a [ConferenceLink],
    settings: &Settings,
) -> Option<(&'a ConferenceLink, Method)> {
    links
        .iter()
        .find_map(|l| match settings.provider(l.provider) {
            ProviderSetting::Native => Some((l, Method::Native)),
            ProviderSetting::Assistant => Some((l, Method::Assistant)),
            ProviderSetting::Disabled => None,
        })
}

/// The reason naming a manual invite.
fn manual_invite(meeting: &Meeting, settings: &Settings) -> String {
    match &settings.bot_address {
        Some(bot)
            if meeting
                .attendees
                .iter()
                .any(|a| a.email.as_deref() == Some(bot.as_str())) =>
        {
            format!("manual invite: the bot ({bot}) is invited")
        }
        _ => "manual invite: the meeting's source says the bot is invited".to_owned(),
    }
}

/// `a`, `a and b`, `a and 3 others`.
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [one, two] => format!("{one} and {two}"),
        [one, rest @ ..] => format!("{one} and {} others", rest.len()),
    }
}

/// ` and N more` after the first of `n`.
fn more(n: usize) -> String {
    match n {
        0 | 1 => String::new(),
        2 => " and 1 more".to_owned(),
        _ => format!(" and {} more", n - 1),
    }
}

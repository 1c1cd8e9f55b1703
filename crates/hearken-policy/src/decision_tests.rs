//! Table tests of [`decide`]: every rule and the combinations that matter
//! (internal/external × user settings × private × manual invite × never ×
//! no link), each asserting the decision and its reasons word for word;
//! then an exhaustive sweep that checks the rules as invariants over every
//! combination.

use super::decision::{ConsentHint, Decision, Method, decide};
use super::links::{Provider, find_links};
use super::meeting::{Attendee, AttendeeKind, Meeting, Response};
use super::settings::{Capture, Settings};
use chrono::{TimeZone, Utc};

const SETTINGS: &str = r#"
company_domains = ["example.com"]
include_subdomains = true
record_internal = false
record_external = true
bot_address = "assistant@hearken.example"

[providers]
zoom = "assistant"
google_meet = "assistant"
teams = "native"
webex = "disabled"

[users]
"alice@example.com" = "always"
"bob@example.com" = "external_only"
"carol@eu.example.com" = "manual_only"
"dave@example.com" = "never"
"#;

const ZOOM: &str = "https://acme.zoom.us/j/81234567890";
const MEET: &str = "https://meet.google.com/abc-defg-hij";
const TEAMS: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0";
const WEBEX: &str = "https://acme.webex.com/meet/alice";
const BOT: &str = "assistant@hearken.example";

const EXT_ERIN: &str = "external: erin@partner.org is not at a company domain";
const INTERNAL: &str = "internal: every invitee is at a company domain";
const MANUAL: &str = "manual invite: the bot (assistant@hearken.example) is invited";
const VIA_ZOOM: &str = "Zoom link in LOCATION; zoom is set to assistant: the bot joins as a visible participant and plays the prompts";
const VIA_MEET: &str = "Google Meet link in LOCATION; google_meet is set to assistant: the bot joins as a visible participant and plays the prompts";
const VIA_TEAMS: &str = "Microsoft Teams link in LOCATION; teams is set to native: the provider sends the media, no participant is added";
const NO_LINK: &str =
    "no Zoom, Google Meet, Teams or Webex link: metadata only (date, time, participants)";
const NOT_INTERNAL: &str =
    "the company does not record internal meetings (record_internal = false)";
const INTERNAL_OVERRIDDEN: &str = "internal meetings are not recorded automatically (record_internal = false), but the manual invite overrides that";
const PRIVATE_SKIP: &str =
    "private: private meetings are not recorded automatically (invite the bot to record this one)";
const NO_ELIGIBLE: &str = "no recorded user's setting allows recording this meeting automatically";
const NOBODY: &str = "no recorded user is on the meeting (nobody on it is listed under users)";

fn settings() -> Settings {
    Settings::from_toml(SETTINGS).unwrap()
}

/// A meeting organised by `organizer` with `attendees`; `location` is
/// scanned for links the way calendar import does.
fn meeting(organizer: &str, attendees: &[&str], location: &str) -> Meeting {
    let mut links = Vec::new();
    find_links(location, "LOCATION", &mut links);
    Meeting {
        uid: "uid-1".into(),
        recurrence_id: None,
        title: "Test".into(),
        start: Utc.with_ymd_and_hms(2025, 3, 3, 15, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2025, 3, 3, 15, 30, 0).unwrap(),
        all_day: false,
        organizer: (!organizer.is_empty()).then(|| Attendee::person(organizer)),
        attendees: attendees.iter().map(|a| Attendee::person(a)).collect(),
        private: false,
        cancelled: false,
        location: (!location.is_empty()).then(|| location.to_owned()),
        links,
        bot_invited: false,
    }
}

fn private(mut m: Meeting) -> Meeting {
    m.private = true;
    m
}

fn cancelled(mut m: Meeting) -> Meeting {
    m.cancelled = true;
    m
}

fn declined(mut m: Meeting, who: &str) -> Meeting {
    for a in &mut m.attendees {
        if a.email.as_deref() == Some(who) {
            a.response = Response::Declined;
        }
    }
    m
}

fn with_attendee(mut m: Meeting, a: Attendee) -> Meeting {
    m.attendees.push(a);
    m
}

/// What a case expects.
enum Want {
    Record(Method, Provider, ConsentHint),
    MetadataOnly,
    Skip,
    Blocked(&'static str),
}

struct Case {
    name: &'static str,
    settings: Settings,
    meeting: Meeting,
    want: Want,
    reasons: &'static [&'static str],
}

fn case(
    name: &'static str,
    meeting: Meeting,
    want: Want,
    reasons: &'static [&'static str],
) -> Case {
    Case {
        name,
        settings: settings(),
        meeting,
        want,
        reasons,
    }
}

fn tweak(mut c: Case, f: impl FnOnce(&mut Settings)) -> Case {
    f(&mut c.settings);
    c
}

fn cases() -> Vec<Case> {
    use ConsentHint::{External, Internal};
    use Method::{Assistant, Native};
    use Provider::{GoogleMeet, Teams, Zoom};
    vec![
        // External meetings and user settings.
        case(
            "external, always user, Zoom: recorded by the assistant",
            meeting("alice@example.com", &["erin@partner.org"], ZOOM),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                VIA_ZOOM,
            ],
        ),
        case(
            "external, external_only user, Meet: recorded",
            meeting("bob@example.com", &["erin@partner.org"], MEET),
            Want::Record(Assistant, GoogleMeet, External),
            &[
                EXT_ERIN,
                "recorded user: bob@example.com (external_only)",
                VIA_MEET,
            ],
        ),
        case(
            "external, Teams set to native: recorded natively",
            meeting("alice@example.com", &["erin@partner.org"], TEAMS),
            Want::Record(Native, Teams, External),
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                VIA_TEAMS,
            ],
        ),
        case(
            "external, two eligible users: the first is named",
            meeting(
                "alice@example.com",
                &["bob@example.com", "erin@partner.org"],
                ZOOM,
            ),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always) and 1 more",
                VIA_ZOOM,
            ],
        ),
        case(
            "external, manual_only user, no invite: skipped",
            meeting("carol@eu.example.com", &["erin@partner.org"], ZOOM),
            Want::Skip,
            &[
                EXT_ERIN,
                "carol@eu.example.com is manual_only: recorded only when the bot is invited",
                NO_ELIGIBLE,
            ],
        ),
        case(
            "external, manual_only user, bot invited: recorded",
            meeting("carol@eu.example.com", &["erin@partner.org", BOT], ZOOM),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                MANUAL,
                "recorded user on the meeting: carol@eu.example.com (manual_only)",
                VIA_ZOOM,
            ],
        ),
        tweak(
            case(
                "external, company does not record external: skipped",
                meeting("alice@example.com", &["erin@partner.org"], ZOOM),
                Want::Skip,
                &[
                    EXT_ERIN,
                    "the company does not record external meetings (record_external = false)",
                ],
            ),
            |s| s.record_external = false,
        ),
        tweak(
            case(
                "external excluded, bot invited: the invite overrides",
                meeting("alice@example.com", &["erin@partner.org", BOT], ZOOM),
                Want::Record(Assistant, Zoom, External),
                &[
                    EXT_ERIN,
                    MANUAL,
                    "external meetings are not recorded automatically (record_external = false), but the manual invite overrides that",
                    "recorded user on the meeting: alice@example.com (always)",
                    VIA_ZOOM,
                ],
            ),
            |s| s.record_external = false,
        ),
        // Internal meetings.
        case(
            "internal, company does not record internal: skipped",
            meeting("alice@example.com", &["bob@example.com"], ZOOM),
            Want::Skip,
            &[INTERNAL, NOT_INTERNAL],
        ),
        tweak(
            case(
                "internal, company records internal, always user: recorded",
                meeting("alice@example.com", &["bob@example.com"], ZOOM),
                Want::Record(Assistant, Zoom, Internal),
                &[
                    INTERNAL,
                    "recorded user: alice@example.com (always)",
                    VIA_ZOOM,
                ],
            ),
            |s| s.record_internal = true,
        ),
        tweak(
            case(
                "internal, company records internal, only an external_only user: skipped",
                meeting("bob@example.com", &["frank@example.com"], ZOOM),
                Want::Skip,
                &[
                    INTERNAL,
                    "bob@example.com is external_only and the meeting is internal",
                    NO_ELIGIBLE,
                ],
            ),
            |s| s.record_internal = true,
        ),
        case(
            "internal excluded, bot invited: the invite overrides",
            meeting("alice@example.com", &["bob@example.com", BOT], MEET),
            Want::Record(Assistant, GoogleMeet, Internal),
            &[
                INTERNAL,
                MANUAL,
                INTERNAL_OVERRIDDEN,
                "recorded user on the meeting: alice@example.com (always) and 1 more",
                VIA_MEET,
            ],
        ),
        case(
            "internal, only an external_only user, bot invited: recorded",
            meeting("bob@example.com", &["frank@example.com", BOT], ZOOM),
            Want::Record(Assistant, Zoom, Internal),
            &[
                INTERNAL,
                MANUAL,
                INTERNAL_OVERRIDDEN,
                "recorded user on the meeting: bob@example.com (external_only)",
                VIA_ZOOM,
            ],
        ),
        // Private meetings.
        case(
            "private external: not recorded automatically",
            private(meeting("alice@example.com", &["erin@partner.org"], ZOOM)),
            Want::Skip,
            &[EXT_ERIN, PRIVATE_SKIP],
        ),
        case(
            "private external, bot invited: the invite overrides",
            private(meeting(
                "alice@example.com",
                &["erin@partner.org", BOT],
                ZOOM,
            )),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                MANUAL,
                "private, but the manual invite overrides that",
                "recorded user on the meeting: alice@example.com (always)",
                VIA_ZOOM,
            ],
        ),
        case(
            "private internal, bot invited: both exclusions overridden",
            private(meeting(
                "alice@example.com",
                &["bob@example.com", BOT],
                ZOOM,
            )),
            Want::Record(Assistant, Zoom, Internal),
            &[
                INTERNAL,
                MANUAL,
                "private, but the manual invite overrides that",
                INTERNAL_OVERRIDDEN,
                "recorded user on the meeting: alice@example.com (always) and 1 more",
                VIA_ZOOM,
            ],
        ),
        case(
            "private without a link: skipped, not even metadata",
            private(meeting(
                "alice@example.com",
                &["erin@partner.org"],
                "Room 4",
            )),
            Want::Skip,
            &[EXT_ERIN, PRIVATE_SKIP],
        ),
        // Never users.
        case(
            "a never attendee blocks the meeting",
            meeting(
                "alice@example.com",
                &["dave@example.com", "erin@partner.org"],
                ZOOM,
            ),
            Want::Blocked("dave@example.com"),
            &["dave@example.com has capture setting never: the meeting is not recorded"],
        ),
        case(
            "a never organizer blocks the meeting",
            meeting("dave@example.com", &["erin@partner.org"], ZOOM),
            Want::Blocked("dave@example.com"),
            &["dave@example.com has capture setting never: the meeting is not recorded"],
        ),
        case(
            "a manual invite never overrides a never user",
            meeting("alice@example.com", &["dave@example.com", BOT], ZOOM),
            Want::Blocked("dave@example.com"),
            &[
                MANUAL,
                "dave@example.com has capture setting never: a manual invite never overrides that, the meeting is not recorded",
            ],
        ),
        case(
            "private + invite + never: blocked",
            private(meeting(
                "alice@example.com",
                &["dave@example.com", BOT],
                ZOOM,
            )),
            Want::Blocked("dave@example.com"),
            &[
                MANUAL,
                "dave@example.com has capture setting never: a manual invite never overrides that, the meeting is not recorded",
            ],
        ),
        case(
            "never user and no link: blocked (nothing is imported)",
            meeting("alice@example.com", &["dave@example.com"], "Room 4"),
            Want::Blocked("dave@example.com"),
            &["dave@example.com has capture setting never: the meeting is not recorded"],
        ),
        tweak(
            case(
                "two never users: both named, the first is the user",
                meeting(
                    "alice@example.com",
                    &["dave@example.com", "grace@example.com"],
                    ZOOM,
                ),
                Want::Blocked("dave@example.com"),
                &[
                    "dave@example.com, grace@example.com have capture setting never: the meeting is not recorded",
                ],
            ),
            |s| {
                s.users.insert("grace@example.com".into(), Capture::Never);
            },
        ),
        case(
            "a never user who declined is not participating",
            declined(
                meeting(
                    "alice@example.com",
                    &["dave@example.com", "erin@partner.org"],
                    ZOOM,
                ),
                "dave@example.com",
            ),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                VIA_ZOOM,
            ],
        ),
        // No supported link.
        case(
            "physical room: metadata only",
            meeting(
                "alice@example.com",
                &["erin@partner.org"],
                "Room 4.12, Berlin office",
            ),
            Want::MetadataOnly,
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                NO_LINK,
            ],
        ),
        case(
            "phone number only: metadata only",
            meeting(
                "alice@example.com",
                &["erin@partner.org"],
                "tel:+1-555-0100",
            ),
            Want::MetadataOnly,
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                NO_LINK,
            ],
        ),
        case(
            "unknown provider: metadata only",
            meeting(
                "alice@example.com",
                &["erin@partner.org"],
                "https://global.gotomeeting.com/join/123456789",
            ),
            Want::MetadataOnly,
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                NO_LINK,
            ],
        ),
        case(
            "disabled provider: metadata only",
            meeting("alice@example.com", &["erin@partner.org"], WEBEX),
            Want::MetadataOnly,
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                "webex link only, and webex is disabled in the settings: metadata only (date, time, participants)",
            ],
        ),
        case(
            "a disabled provider's link is passed over for an enabled one",
            meeting(
                "alice@example.com",
                &["erin@partner.org"],
                "https://acme.webex.com/meet/alice or https://acme.zoom.us/j/81234567890",
            ),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                VIA_ZOOM,
            ],
        ),
        tweak(
            case(
                "a provider left out of the settings is disabled",
                meeting("alice@example.com", &["erin@partner.org"], TEAMS),
                Want::MetadataOnly,
                &[
                    EXT_ERIN,
                    "recorded user: alice@example.com (always)",
                    "teams link only, and teams is disabled in the settings: metadata only (date, time, participants)",
                ],
            ),
            |s| {
                s.providers.remove(&Provider::Teams);
            },
        ),
        case(
            "manual invite without a link: metadata only",
            meeting("alice@example.com", &["bob@example.com", BOT], "Room 4"),
            Want::MetadataOnly,
            &[
                INTERNAL,
                MANUAL,
                INTERNAL_OVERRIDDEN,
                "recorded user on the meeting: alice@example.com (always) and 1 more",
                NO_LINK,
            ],
        ),
        case(
            "internal excluded without a link: skipped, not metadata",
            meeting("alice@example.com", &["bob@example.com"], "Room 4"),
            Want::Skip,
            &[INTERNAL, NOT_INTERNAL],
        ),
        // Recorded users.
        case(
            "nobody listed: skipped",
            meeting("erin@partner.org", &["zed@other.org"], ZOOM),
            Want::Skip,
            &[
                "external: erin@partner.org and zed@other.org are not at a company domain",
                NOBODY,
            ],
        ),
        case(
            "nobody listed, bot invited: still skipped",
            meeting("erin@partner.org", &[BOT], ZOOM),
            Want::Skip,
            &[EXT_ERIN, MANUAL, NOBODY],
        ),
        case(
            "the only recorded user declined: skipped",
            declined(
                meeting(
                    "erin@partner.org",
                    &["alice@example.com", "frank@example.com"],
                    ZOOM,
                ),
                "alice@example.com",
            ),
            Want::Skip,
            &[EXT_ERIN, NOBODY],
        ),
        case(
            "nobody at all: internal, and no recorded user",
            meeting("", &[], ZOOM),
            Want::Skip,
            &[INTERNAL, NOBODY],
        ),
        // Cancelled.
        case(
            "cancelled: skipped before anything else",
            cancelled(meeting(
                "alice@example.com",
                &["dave@example.com", BOT],
                ZOOM,
            )),
            Want::Skip,
            &["the meeting is cancelled"],
        ),
        // Domains.
        case(
            "domains and addresses are case-insensitive",
            meeting("ALICE@EXAMPLE.COM", &["Bob@Example.Com"], ZOOM),
            Want::Skip,
            &[INTERNAL, NOT_INTERNAL],
        ),
        case(
            "an upper-case outsider is named in lower case",
            meeting("Alice@Example.com", &["Erin@PARTNER.org"], ZOOM),
            Want::Record(Assistant, Zoom, External),
            &[
                EXT_ERIN,
                "recorded user: alice@example.com (always)",
                VIA_ZOOM,
            ],
        ),
        case(
            "a subdomain is internal when include_subdomains",
            meeting("alice@example.com", &["frank@eu.example.com"], ZOOM),
            Want::Skip,
            &[INTERNAL, NOT_INTERNAL],
        ),
        tweak(
            case(
                "a subdomain is external without include_subdomains",
                meeting("alice@example.com", &["frank@eu.example.com"], ZOOM),
                Want::Record(Assistant, Zoom, External),
                &[
                    "external: frank@eu.example.com is not at a company domain",
                    "recorded user: alice@example.com (always)",
                    VIA_ZOOM,
                ],
            ),
            |s| s.include_subdomains = false,
        ),
        case(
            "a look-alike domain is external",
            meeting("alice@example.com", &["mallory@notexample.com"], ZOOM),
            Want::Record(Assistant, Zoom, External),
            &[
                "external: mallory@notexample.com is not at a company domain",
                "recorded user: alice@example.com (always)",
                VIA_ZOOM,
            ],
        ),
        case(
            "rooms and resources never make a meeting external",
            with_attendee(
                with_attendee(
                    meeting("alice@example.com", &["bob@example.com"], ZOOM),
                    Attendee::person("c_1888@resource.calendar.google.com"),
                ),
                Attendee {
                    email: Some("desk-12@wework.com".into()),
                    name: Some("Desk 12".into()),
                    kind: AttendeeKind::Room,
                    response: Response::Accepted,
                },
            ),
            Want::Skip,
            &[INTERNAL, NOT_INTERNAL],
        ),
        case(
            "an invitee without an email address makes it external",
            with_attendee(
                meeting("alice@example.com", &["bob@example.com"], ZOOM),
                Attendee {
                    email: None,
                    name: Some("Front desk".into()),
                    kind: AttendeeKind::Person,
                    response: Response::NeedsAction,
                },
            ),
            Want::Record(Assistant, Zoom, External),
            &[
                "external: Front desk (no email address) is not at a company domain",
                "recorded user: alice@example.com (always) and 1 more",
                VIA_ZOOM,
            ],
        ),
        // The bot's address.
        case(
            "the bot's address matches case-insensitively",
            meeting(
                "alice@example.com",
                &["bob@example.com", "ASSISTANT@Hearken.Example"],
                ZOOM,
            ),
            Want::Record(Assistant, Zoom, Internal),
            &[
                INTERNAL,
                MANUAL,
                INTERNAL_OVERRIDDEN,
                "recorded user on the meeting: alice@example.com (always) and 1 more",
                VIA_ZOOM,
            ],
        ),
        case(
            "a source that says the bot is invited",
            {
                let mut m = meeting("alice@example.com", &["bob@example.com"], ZOOM);
                m.bot_invited = true;
                m
            },
            Want::Record(Assistant, Zoom, Internal),
            &[
                INTERNAL,
                "manual invite: the meeting's source says the bot is invited",
                INTERNAL_OVERRIDDEN,
                "recorded user on the meeting: alice@example.com (always) and 1 more",
                VIA_ZOOM,
            ],
        ),
        tweak(
            case(
                "without a bot_address the bot's address is just an outsider",
                meeting("alice@example.com", &[BOT], ZOOM),
                Want::Record(Assistant, Zoom, External),
                &[
                    "external: assistant@hearken.example is not at a company domain",
                    "recorded user: alice@example.com (always)",
                    VIA_ZOOM,
                ],
            ),
            |s| s.bot_address = None,
        ),
    ]
}

#[test]
fn every_rule_gives_its_decision_and_reasons() {
    let mut failures = Vec::new();
    for c in cases() {
        let got = decide(&c.meeting, &c.settings);
        let kind_ok = match (&c.want, &got) {
            (
                Want::Record(method, provider, hint),
                Decision::Record {
                    method: m,
                    provider: p,
                    consent_mode_hint: h,
                    ..
                },
            ) => method == m && provider == p && hint == h,
            (Want::MetadataOnly, Decision::MetadataOnly { .. }) => true,
            (Want::Skip, Decision::Skip { .. }) => true,
            (Want::Blocked(user), Decision::Blocked { user: u, .. }) => user == u,
            _ => false,
        };
        if !kind_ok || got.reasons() != c.reasons {
            failures.push(format!("{}:\n  got {got:#?}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every combination of meeting type, one company user's setting, private,
/// manual invite, link and company settings; the rules as invariants.
#[test]
fn every_combination_follows_the_rules() {
    let captures = [
        None,
        Some(Capture::Always),
        Some(Capture::ExternalOnly),
        Some(Capture::ManualOnly),
        Some(Capture::Never),
    ];
    let links = ["", ZOOM, TEAMS, WEBEX];
    let mut count = 0;
    for external in [false, true] {
        for capture in captures {
            for is_private in [false, true] {
                for bot in [false, true] {
                    for link in links {
                        for record_internal in [false, true] {
                            for record_external in [false, true] {
                                for is_cancelled in [false, true] {
                                    let mut s = settings();
                                    s.record_internal = record_internal;
                                    s.record_external = record_external;
                                    s.users.clear();
                                    if let Some(c) = capture {
                                        s.users.insert("user@example.com".into(), c);
                                    }
                                    let mut attendees = vec!["frank@example.com"];
                                    if external {
                                        attendees.push("erin@partner.org");
                                    }
                                    if bot {
                                        attendees.push(BOT);
                                    }
                                    let mut m = meeting("user@example.com", &attendees, link);
                                    m.private = is_private;
                                    m.cancelled = is_cancelled;
                                    let d = decide(&m, &s);
                                    count += 1;
                                    let what = format!(
                                        "external={external} capture={capture:?} private={is_private} bot={bot} link={link:?} \
                                         record_internal={record_internal} record_external={record_external} cancelled={is_cancelled}: {d:?}"
                                    );
                                    assert!(!d.reasons().is_empty(), "{what}");
                                    assert!(
                                        d.reasons().iter().all(|r| !r.trim().is_empty()),
                                        "{what}"
                                    );
                                    if is_cancelled {
                                        assert_eq!(d.kind(), "skip", "{what}");
                                        continue;
                                    }
                                    if capture == Some(Capture::Never) {
                                        assert_eq!(
                                            d,
                                            Decision::Blocked {
                                                user: "user@example.com".into(),
                                                reasons: d.reasons().to_vec()
                                            },
                                            "{what}"
                                        );
                                        continue;
                                    }
                                    let type_allowed = if external {
                                        record_external
                                    } else {
                                        record_internal
                                    };
                                    let user_allows = match capture {
                                        None | Some(Capture::Never) => false,
                                        Some(Capture::Always) => true,
                                        Some(Capture::ExternalOnly) => external,
                                        Some(Capture::ManualOnly) => false,
                                    };
                                    let eligible = capture.is_some()
                                        && (bot || (!is_private && type_allowed && user_allows));
                                    let usable = link == ZOOM || link == TEAMS;
                                    let want = match (eligible, usable) {
                                        (false, _) => "skip",
                                        (true, false) => "metadata_only",
                                        (true, true) => "record",
                                    };
                                    assert_eq!(d.kind(), want, "{what}");
                                    if let Decision::Record {
                                        method,
                                        consent_mode_hint,
                                        ..
                                    } = &d
                                    {
                                        let expected = if link == TEAMS {
                                            Method::Native
                                        } else {
                                            Method::Assistant
                                        };
                                        assert_eq!(*method, expected, "{what}");
                                        let hint = if external {
                                            ConsentHint::External
                                        } else {
                                            ConsentHint::Internal
                                        };
                                        assert_eq!(*consent_mode_hint, hint, "{what}");
                                    }
                                    assert_eq!(d.reason(), d.reasons().last().unwrap().as_str());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(count, 2 * 5 * 2 * 2 * 4 * 2 * 2 * 2);
}

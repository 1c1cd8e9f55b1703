//! Recording policy: which meetings are recorded, how, and why.
//!
//! Before any audio flows, the company's rules decide whether a meeting is
//! recorded at all. Everything here is pure: text in (settings, iCalendar,
//! JSON meetings), values out; "now" and the import window are arguments.
//!
//! - [`settings`]: the company's settings (JSON or TOML, same fields):
//!   domains, internal/external recording, the bot's address, method per
//!   provider, and each user's capture setting.
//! - [`meeting`]: one meeting occurrence as the policy sees it.
//! - [`links`]: conferencing providers detected from URLs.
//! - [`calendar`]: iCalendar import with recurrence expansion over a window
//!   ([`calendar::import_ics`]), errors named per event.
//! - [`json`]: the JSON meeting format providers push by API.
//! - [`decision`]: [`decide`], the rules, each outcome with its reasons.
//!
//! ```
//! use hearken_policy::{Settings, decide, import_ics, Window};
//!
//! let settings = Settings::from_toml(r#"
//!     company_domains = ["example.com"]
//!     record_internal = false
//!     record_external = true
//!     [providers]
//!     zoom = "assistant"
//!     [users]
//!     "alice@example.com" = "always"
//! "#).unwrap();
//! let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Demo\r\n\
//!            DTSTART:20250303T150000Z\r\nDTEND:20250303T153000Z\r\n\
//!            ORGANIZER:mailto:alice@example.com\r\nATTENDEE:mailto:erin@partner.org\r\n\
//!            LOCATION:https://acme.zoom.us/j/123\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
//! let window = Window {
//!     from: "2025-03-01T00:00:00Z".parse().unwrap(),
//!     to: "2025-04-01T00:00:00Z".parse().unwrap(),
//! };
//! let (meetings, errors) = import_ics(ics, &window);
//! assert!(errors.is_empty());
//! let decision = decide(&meetings[0], &settings);
//! assert_eq!(decision.kind(), "record");
//! ```

pub mod calendar;
pub mod decision;
pub mod json;
pub mod links;
pub mod meeting;
pub mod settings;
pub mod timezones;

pub use calendar::{Calendar, EventRef, ImportError, ImportErrorKind, import_ics};
pub use decision::{ConsentHint, Decision, Method, decide};
pub use json::{meeting_from_json, meetings_from_json};
pub use links::{ConferenceLink, Provider, detect_provider};
pub use meeting::{Attendee, AttendeeKind, Meeting, Response, Window};
pub use settings::{Capture, ProviderSetting, Settings, SettingsError, SettingsFormat};

#[cfg(test)]
mod decision_tests;

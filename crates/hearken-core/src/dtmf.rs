//! RFC 4733 telephone-event (DTMF) assembly: the packets of one stream in,
//! one [`Digit`] per key press out.
//!
//! A sender reports one event in many RTP packets that share its start
//! timestamp (§2.2.1): updates with a growing duration, then the end packet,
//! sent three times (§2.5.1.4). Packets may be lost, repeated or reordered,
//! and an event longer than 0xFFFF timestamp units is split into segments
//! (§2.5.1.3). The assembler reports each event exactly once:
//!
//! - on its first end packet, or
//! - when [`DtmfConfig::end_timeout`] passes with no packet for it (every end
//!   packet lost), or
//! - as soon as a packet of a later event arrives: a source plays one event at
//!   a time, so a new one means the previous one is over.
//!
//! Packets of an event already reported (repeats, end retransmissions, late
//! updates) are ignored; the assembler remembers the last
//! [`REMEMBERED_EVENTS`] reported events, so its state stays bounded. Event
//! codes above 16 (not DTMF) are ignored.
//!
//! **Segments.** A segment that continues an open (not yet ended) event of the
//! same code is part of that event, not a new press: it starts where the
//! previous segment ended, at most 0xFFFF units after its start. The assembler
//! takes a packet with the same code that starts
//! [`SEGMENT_MIN_UNITS`]`..=0xFFFF` units after the open segment's start as
//! its continuation (RFC 4733 asks for exactly 0xFFFF; the window accepts
//! senders that split on a packet boundary). The digit then reports once, with
//! the duration of all segments. A second press of the same key is told apart
//! by its start: it would have to begin inside that window *and* follow a
//! press whose three end packets were all lost to be mistaken for a segment.
//!
//! No clock is read: every entry point takes `now`. The shell feeds each
//! telephone-event packet to [`DtmfAssembler::handle_packet`], calls
//! [`DtmfAssembler::handle_timeout`] when [`DtmfAssembler::poll_timeout`] is
//! due, and calls it again until it returns `None`.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Reported events remembered to recognise their late packets.
pub const REMEMBERED_EVENTS: usize = 32;

/// Events kept open at once; when a packet opens one more, the oldest is
/// reported. A source plays one event at a time, so two are already unusual.
const MAX_OPEN: usize = 4;

/// Digits reported but not yet handed out; beyond this the oldest is dropped.
/// More than one is queued only when one packet completes several events.
const MAX_READY: usize = 16;

/// Largest duration one segment can report, in timestamp units (§2.5.1.3).
const SEGMENT_MAX_UNITS: u64 = 0xFFFF;

/// Smallest start offset, in timestamp units, at which a packet with the same
/// code continues an open event as its next segment.
pub const SEGMENT_MIN_UNITS: u64 = 0xF000;

/// A DTMF key: the RFC 4733 events 0–16 (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DtmfKey {
    /// `0`, event 0.
    Digit0,
    /// `1`, event 1.
    Digit1,
    /// `2`, event 2.
    Digit2,
    /// `3`, event 3.
    Digit3,
    /// `4`, event 4.
    Digit4,
    /// `5`, event 5.
    Digit5,
    /// `6`, event 6.
    Digit6,
    /// `7`, event 7.
    Digit7,
    /// `8`, event 8.
    Digit8,
    /// `9`, event 9.
    Digit9,
    /// `*`, event 10.
    Star,
    /// `#`, event 11.
    Pound,
    /// `A`, event 12.
    A,
    /// `B`, event 13.
    B,
    /// `C`, event 14.
    C,
    /// `D`, event 15.
    D,
    /// Hook flash, event 16; written `!` (as in SIP INFO dtmf-relay).
    Flash,
}

impl DtmfKey {
    /// Every key, in event code order.
    pub const ALL: [DtmfKey; 17] = [
        DtmfKey::Digit0,
        DtmfKey::Digit1,
        DtmfKey::Digit2,
        DtmfKey::Digit3,
        DtmfKey::Digit4,
        DtmfKey::Digit5,
        DtmfKey::Digit6,
        DtmfKey::Digit7,
        DtmfKey::Digit8,
        DtmfKey::Digit9,
        DtmfKey::Star,
        DtmfKey::Pound,
        DtmfKey::A,
        DtmfKey::B,
        DtmfKey::C,
        DtmfKey::D,
        DtmfKey::Flash,
    ];

    /// The key of an RFC 4733 event code; `None` for codes above 16.
    pub fn from_code(code: u8) -> Option<DtmfKey> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code, 0–16.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The key as written: `0`–`9`, `*`, `#`, `A`–`D`, and `!` for flash.
    pub fn as_char(self) -> char {
        b"0123456789*#ABCD!"
            .get(usize::from(self.code()))
            .map_or('!', |&b| char::from(b))
    }

    /// The key written as `c` (letters in either case); `None` for any other
    /// character.
    pub fn from_char(c: char) -> Option<DtmfKey> {
        let c = c.to_ascii_uppercase();
        Self::ALL.into_iter().find(|key| key.as_char() == c)
    }
}

impl fmt::Display for DtmfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// Why a string is not a DTMF key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseDtmfKeyError {
    /// The string is not one of `0`–`9`, `*`, `#`, `A`–`D`, `!` or `flash`.
    #[error("{0:?} is not a DTMF key (expected one of 0-9, *, #, A-D, or flash)")]
    Invalid(String),
}

impl FromStr for DtmfKey {
    type Err = ParseDtmfKeyError;

    /// Parses one key character (surrounding whitespace allowed), or `flash`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.eq_ignore_ascii_case("flash") {
            return Ok(DtmfKey::Flash);
        }
        let mut chars = trimmed.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => DtmfKey::from_char(c),
            _ => None,
        }
        .ok_or_else(|| ParseDtmfKeyError::Invalid(s.to_owned()))
    }
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// The key.
    pub key: DtmfKey,
    /// Arrival of the event's first packet.
    pub started_at: Instant,
    /// How long the key was held: the longest duration its packets reported,
    /// all segments together. Shorter than the press when its last packets
    /// were lost.
    pub duration: Duration,
}

/// Assembler settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfConfig {
    /// How long after an event's last packet it is reported when no end packet
    /// came. Senders send an update at least every 50 ms or so while a key is
    /// held, so 500 ms only fires when the end packets were lost.
    pub end_timeout: Duration,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        Self {
            end_timeout: Duration::from_millis(500),
        }
    }
}

/// An event seen but not yet reported.
#[derive(Debug, Clone, Copy)]
struct Open {
    code: u8,
    key: DtmfKey,
    /// Start timestamp of its first segment.
    first_start: u64,
    /// Start timestamp of its current (latest) segment.
    start: u64,
    /// Durations of the segments before the current one.
    earlier: Duration,
    /// Longest duration reported for the current segment.
    segment: Duration,
    started_at: Instant,
    last_at: Instant,
}

impl Open {
    fn digit(&self) -> Digit {
        Digit {
            key: self.key,
            started_at: self.started_at,
            duration: self.earlier.saturating_add(self.segment),
        }
    }

    /// Whether a packet with this code and start belongs to one of the
    /// event's segments.
    fn covers(&self, code: u8, start: u64) -> bool {
        code == self.code && (self.first_start..=self.start).contains(&start)
    }

    /// Whether a packet with this code and start begins the segment after the
    /// current one.
    fn continued_by(&self, code: u8, start: u64) -> bool {
        code == self.code
            && start
                .checked_sub(self.start)
                .is_some_and(|offset| (SEGMENT_MIN_UNITS..=SEGMENT_MAX_UNITS).contains(&offset))
    }
}

/// A reported event: its code and the starts of its first and last segments.
#[derive(Debug, Clone, Copy)]
struct Reported {
    code: u8,
    first_start: u64,
    start: u64,
}

/// Assembles RFC 4733 telephone-event packets of one stream into digits.
#[derive(Debug)]
pub struct DtmfAssembler {
    config: DtmfConfig,
    /// Events seen but not reported, in order of arrival.
    open: VecDeque<Open>,
    /// The last [`REMEMBERED_EVENTS`] reported events, oldest first.
    reported: VecDeque<Reported>,
    /// Digits reported but not yet returned, with when they became ready.
    ready: VecDeque<(Digit, Instant)>,
}

impl DtmfAssembler {
    /// An assembler with no events seen.
    pub fn new(config: DtmfConfig) -> Self {
        Self {
            config,
            open: VecDeque::new(),
            reported: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }

    /// One telephone-event packet: `start` is the event's RTP start timestamp
    /// (extended to 64 bits), `event` its code, `end` its E bit, `duration`
    /// how long the event has lasted so far, `now` its arrival.
    ///
    /// Returns a digit if one is complete. If this packet completed more than
    /// one, the rest come from [`handle_timeout`](Self::handle_timeout), which
    /// [`poll_timeout`](Self::poll_timeout) then makes due at once.
    pub fn handle_packet(
        &mut self,
        start: u64,
        event: u8,
        end: bool,
        duration: Duration,
        now: Instant,
    ) -> Option<Digit> {
        self.accept(start, event, end, duration, now);
        self.pop_ready()
    }

    /// Reports events whose end packet has not come within the end timeout,
    /// and hands out digits left queued. Returns one digit per call: call it
    /// until it returns `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Digit> {
        let timeout = self.config.end_timeout;
        while let Some(i) = self
            .open
            .iter()
            .position(|o| o.last_at.checked_add(timeout).is_some_and(|t| t <= now))
        {
            self.report(i, now);
        }
        self.pop_ready()
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work: at once
    /// (a past instant) if digits are queued, else the earliest end timeout of
    /// an open event; `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ready = self.ready.front().map(|&(_, at)| at);
        let timeout = self.config.end_timeout;
        let open = self
            .open
            .iter()
            .filter_map(|o| o.last_at.checked_add(timeout))
            .min();
        match (ready, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn accept(&mut self, start: u64, code: u8, end: bool, duration: Duration, now: Instant) {
        let Some(key) = DtmfKey::from_code(code) else {
            return;
        };
        let already_reported = self
            .reported
            .iter()
            .any(|r| r.code == code && (r.first_start..=r.start).contains(&start));
        if already_reported {
            return;
        }

        if let Some(i) = self.open.iter().position(|o| o.covers(code, start)) {
            let Some(open) = self.open.get_mut(i) else {
                return;
            };
            open.last_at = open.last_at.max(now);
            if start == open.start {
                open.segment = open.segment.max(duration);
            }
            if end && start == open.start {
                self.report(i, now);
            }
            return;
        }

        if let Some(i) = self.open.iter().position(|o| o.continued_by(code, start)) {
            let Some(open) = self.open.get_mut(i) else {
                return;
            };
            open.earlier = open.earlier.saturating_add(open.segment);
            open.start = start;
            open.segment = duration;
            open.last_at = open.last_at.max(now);
            if end {
                self.report(i, now);
            }
            return;
        }

        // A new event: the ones that started before it are over.
        while let Some(i) = self.open.iter().position(|o| o.start < start) {
            self.report(i, now);
        }
        if self.open.len() >= MAX_OPEN {
            self.report(0, now);
        }
        self.open.push_back(Open {
            code,
            key,
            first_start: start,
            start,
            earlier: Duration::ZERO,
            segment: duration,
            started_at: now,
            last_at: now,
        });
        if end {
            self.report(self.open.len() - 1, now);
        }
    }

    /// Moves open event `i` to the reported ones and queues its digit.
    fn report(&mut self, i: usize, now: Instant) {
        let Some(open) = self.open.remove(i) else {
            return;
        };
        if self.reported.len() >= REMEMBERED_EVENTS {
            self.reported.pop_front();
        }
        self.reported.push_back(Reported {
            code: open.code,
            first_start: open.first_start,
            start: open.start,
        });
        if self.ready.len() >= MAX_READY {
            self.ready.pop_front();
        }
        self.ready.push_back((open.digit(), now));
    }

    fn pop_ready(&mut self) -> Option<Digit> {
        self.ready.pop_front().map(|(digit, _)| digit)
    }
}

// Tests pick a real Instant (and UTC time) to start simulated time from;
// the code under test never reads a clock.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds packets at times in ms after `base`, handles due timeouts after
    /// each one and collects every digit reported.
    struct Sender {
        dtmf: DtmfAssembler,
        base: Instant,
        digits: Vec<Digit>,
    }

    impl Sender {
        fn new() -> Self {
            Self {
                dtmf: DtmfAssembler::new(DtmfConfig::default()),
                base: Instant::now(),
                digits: Vec::new(),
            }
        }

        fn at(&self, t: u64) -> Instant {
            self.base + ms(t)
        }

        fn packet(&mut self, t: u64, start: u64, event: u8, end: bool, dur_ms: u64) {
            let now = self.at(t);
            if let Some(d) = self.dtmf.handle_packet(start, event, end, ms(dur_ms), now) {
                self.digits.push(d);
            }
            self.drain(now);
        }

        fn drain(&mut self, now: Instant) {
            while self.dtmf.poll_timeout().is_some_and(|t| t <= now) {
                match self.dtmf.handle_timeout(now) {
                    Some(d) => self.digits.push(d),
                    None => break,
                }
            }
        }

        /// A press of `event` at 8 kHz starting at `t0` ms (RTP start
        /// `t0 * 8`), held `held` ms: updates every 50 ms, then three end
        /// packets 20 ms apart.
        fn press(&mut self, t0: u64, event: u8, held: u64) {
            let start = t0 * 8;
            let mut d = 0;
            while d < held {
                self.packet(t0 + d, start, event, false, d);
                d += 50;
            }
            for i in 0..3 {
                self.packet(t0 + held + i * 20, start, event, true, held);
            }
        }
    }

    #[test]
    fn one_press_with_three_end_packets_is_one_digit() {
        let mut s = Sender::new();
        s.press(1000, 1, 200);
        assert_eq!(s.digits.len(), 1);
        let d = s.digits[0];
        assert_eq!(d.key, DtmfKey::Digit1);
        assert_eq!(d.started_at, s.at(1000));
        assert_eq!(d.duration, ms(200));
        // It is reported on the first end packet, before the repeats.
        assert_eq!(s.dtmf.poll_timeout(), None);
        s.drain(s.at(10_000));
        assert_eq!(s.digits.len(), 1);
    }

    #[test]
    fn the_digit_comes_with_the_first_end_packet() {
        let mut s = Sender::new();
        let now = s.at(0);
        assert_eq!(
            s.dtmf.handle_packet(800, 9, false, Duration::ZERO, now),
            None
        );
        assert_eq!(s.dtmf.poll_timeout(), Some(now + ms(500)));
        let d = s.dtmf.handle_packet(800, 9, true, ms(100), s.at(100));
        assert_eq!(d.map(|d| d.key), Some(DtmfKey::Digit9));
        assert_eq!(s.dtmf.poll_timeout(), None);
    }

    #[test]
    fn lost_end_packets_report_on_timeout() {
        let mut s = Sender::new();
        for d in [0, 50, 100, 150] {
            s.packet(d, 4000, 9, false, d);
        }
        assert!(s.digits.is_empty());
        assert_eq!(s.dtmf.poll_timeout(), Some(s.at(650)));
        s.drain(s.at(649));
        assert!(s.digits.is_empty());
        s.drain(s.at(650));
        assert_eq!(s.digits.len(), 1);
        assert_eq!(s.digits[0].key, DtmfKey::Digit9);
        assert_eq!(s.digits[0].duration, ms(150));
        assert_eq!(s.dtmf.poll_timeout(), None);
        // A late end packet of that event is not a second digit.
        s.packet(700, 4000, 9, true, 200);
        assert_eq!(s.digits.len(), 1);
    }

    #[test]
    fn handle_timeout_before_the_deadline_reports_nothing() {
        let mut s = Sender::new();
        s.packet(0, 0, 5, false, 0);
        assert_eq!(s.dtmf.handle_timeout(s.at(499)), None);
        assert_eq!(
            s.dtmf.handle_timeout(s.at(500)).map(|d| d.key),
            Some(DtmfKey::Digit5)
        );
        assert_eq!(s.dtmf.handle_timeout(s.at(10_000)), None);
    }

    #[test]
    fn duplicates_and_reordering_give_one_digit() {
        let mut s = Sender::new();
        let start = 16_000;
        s.packet(0, start, 3, false, 0);
        s.packet(40, start, 3, false, 100);
        s.packet(41, start, 3, false, 50); // late, shorter
        s.packet(42, start, 3, false, 100); // duplicate
        s.packet(90, start, 3, true, 160);
        s.packet(91, start, 3, false, 150); // update after the end
        s.packet(110, start, 3, true, 160);
        s.packet(130, start, 3, true, 160);
        s.drain(s.at(5_000));
        assert_eq!(s.digits.len(), 1);
        assert_eq!(s.digits[0].key, DtmfKey::Digit3);
        assert_eq!(s.digits[0].duration, ms(160));
    }

    #[test]
    fn an_end_packet_first_still_reports_once() {
        let mut s = Sender::new();
        s.packet(0, 500, 11, true, 120);
        s.packet(1, 500, 11, false, 60);
        s.packet(2, 500, 11, true, 120);
        s.drain(s.at(5_000));
        assert_eq!(s.digits.len(), 1);
        assert_eq!(s.digits[0].key, DtmfKey::Pound);
    }

    #[test]
    fn two_presses_of_one_key_are_two_digits() {
        let mut s = Sender::new();
        s.press(0, 1, 120);
        s.press(400, 1, 120);
        assert_eq!(s.digits.len(), 2);
        assert!(s.digits.iter().all(|d| d.key == DtmfKey::Digit1));
        assert_eq!(s.digits[1].started_at, s.at(400));
    }

    #[test]
    fn a_new_event_reports_the_previous_one_without_an_end() {
        let mut s = Sender::new();
        s.packet(0, 0, 1, false, 0);
        s.packet(50, 0, 1, false, 50);
        // Its end packets are lost; the next key starts 150 ms later.
        s.packet(200, 1600, 2, false, 0);
        assert_eq!(s.digits.len(), 1);
        assert_eq!(s.digits[0].key, DtmfKey::Digit1);
        assert_eq!(s.digits[0].duration, ms(50));
        // The same key again, also without an end: reported on the next start.
        s.packet(400, 3200, 1, false, 0);
        assert_eq!(s.digits.len(), 2);
        assert_eq!(s.digits[1].key, DtmfKey::Digit2);
        s.drain(s.at(900));
        assert_eq!(s.digits.len(), 3);
        assert_eq!(s.digits[2].key, DtmfKey::Digit1);
    }

    #[test]
    fn one_packet_can_complete_two_events() {
        let mut s = Sender::new();
        s.packet(0, 0, 7, false, 0);
        // The first packet seen of the next event is already its end.
        let now = s.at(300);
        let first = s.dtmf.handle_packet(2400, 8, true, ms(100), now);
        assert_eq!(first.map(|d| d.key), Some(DtmfKey::Digit7));
        assert_eq!(s.dtmf.poll_timeout(), Some(now));
        assert_eq!(
            s.dtmf.handle_timeout(now).map(|d| d.key),
            Some(DtmfKey::Digit8)
        );
        assert_eq!(s.dtmf.handle_timeout(now), None);
        assert_eq!(s.dtmf.poll_timeout(), None);
    }

    #[test]
    fn contiguous_segments_of_a_long_press_are_one_digit() {
        // At 48 kHz a segment is 0xFFFF units, about 1.365 s.
        let mut s = Sender::new();
        let seg = Duration::from_nanos(65_535 * 1_000_000_000 / 48_000);
        let mut start = 96_000;
        for segment in 0..3u32 {
            let t0 = u64::from(segment) * 1365;
            let last = segment == 2;
            let held = if last { 400 } else { 1365 };
            let mut d = 0;
            while d < held {
                s.packet(t0 + d, start, 0, false, d);
                d += 20;
            }
            let full = if last { ms(400) } else { seg };
            let now = s.at(t0 + held);
            assert_eq!(s.dtmf.handle_packet(start, 0, false, full, now), None);
            if last {
                for i in 0..3 {
                    s.packet(t0 + held + i * 20, start, 0, true, 400);
                }
            }
            start += 0xFFFF;
        }
        s.drain(s.at(100_000));
        assert_eq!(s.digits.len(), 1, "{:?}", s.digits);
        assert_eq!(s.digits[0].key, DtmfKey::Digit0);
        assert_eq!(s.digits[0].duration, seg * 2 + ms(400));
        assert_eq!(s.digits[0].started_at, s.at(0));
    }

    #[test]
    fn a_segment_split_on_a_packet_boundary_also_continues() {
        let mut s = Sender::new();
        s.packet(0, 0, 4, false, 1300);
        // 68 packets of 960 units: 65280, just below 0xFFFF.
        s.packet(1360, 65_280, 4, false, 20);
        // A late update of the first segment is no new digit either.
        s.packet(1361, 0, 4, false, 1340);
        s.packet(1400, 65_280, 4, true, 60);
        s.drain(s.at(10_000));
        assert_eq!(s.digits.len(), 1);
        assert_eq!(s.digits[0].duration, ms(1360));
    }

    #[test]
    fn same_code_outside_the_segment_window_is_a_new_press() {
        let mut s = Sender::new();
        s.packet(0, 0, 1, false, 100);
        // Ends lost; the same key again 300 ms later at 8 kHz (2400 units).
        s.packet(300, 2400, 1, false, 0);
        assert_eq!(s.digits.len(), 1);
        s.packet(400, 2400, 1, true, 100);
        assert_eq!(s.digits.len(), 2);
    }

    #[test]
    fn events_above_16_are_ignored() {
        let mut s = Sender::new();
        for code in [17u8, 32, 200, 255] {
            s.packet(0, 100, code, false, 0);
            s.packet(10, 100, code, true, 100);
        }
        assert_eq!(s.dtmf.poll_timeout(), None);
        s.drain(s.at(10_000));
        assert!(s.digits.is_empty());
        // Flash (16) is still a key.
        s.packet(20_000, 900, 16, true, 100);
        assert_eq!(s.digits.len(), 1);
        assert_eq!(s.digits[0].key, DtmfKey::Flash);
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = Sender::new();
        for i in 0..1000u64 {
            s.packet(i * 200, i * 1600, (i % 12) as u8, true, 100);
        }
        assert_eq!(s.digits.len(), 1000);
        assert!(s.dtmf.reported.len() <= REMEMBERED_EVENTS);
        assert!(s.dtmf.open.is_empty());
        assert!(s.dtmf.ready.is_empty());
        // Recent events are still recognised...
        s.packet(300_000, 999 * 1600, (999 % 12) as u8, true, 100);
        assert_eq!(s.digits.len(), 1000);
        // ...while a packet of an event long forgotten counts as a new one:
        // the price of the bound.
        s.packet(300_100, 0, 0, true, 100);
        assert_eq!(s.digits.len(), 1001);
    }

    #[test]
    fn huge_timeouts_and_durations_do_not_panic() {
        let mut dtmf = DtmfAssembler::new(DtmfConfig {
            end_timeout: Duration::MAX,
        });
        let now = Instant::now();
        assert_eq!(
            dtmf.handle_packet(u64::MAX, 1, false, Duration::MAX, now),
            None
        );
        assert_eq!(dtmf.poll_timeout(), None);
        assert_eq!(
            dtmf.handle_timeout(now + Duration::from_secs(1 << 40)),
            None
        );
        let d = dtmf.handle_packet(u64::MAX, 1, true, Duration::MAX, now);
        assert_eq!(d.map(|d| d.duration), Some(Duration::MAX));
    }

    #[test]
    fn keys_codes_and_chars() {
        for (code, key) in DtmfKey::ALL.iter().enumerate() {
            assert_eq!(usize::from(key.code()), code);
            assert_eq!(DtmfKey::from_code(key.code()), Some(*key));
            assert_eq!(DtmfKey::from_char(key.as_char()), Some(*key));
            assert_eq!(key.to_string().parse::<DtmfKey>(), Ok(*key));
        }
        assert_eq!(DtmfKey::from_code(17), None);
        assert_eq!(DtmfKey::Digit1.as_char(), '1');
        assert_eq!(DtmfKey::Pound.as_char(), '#');
        assert_eq!(DtmfKey::Star.as_char(), '*');
        assert_eq!(DtmfKey::from_char('d'), Some(DtmfKey::D));
        assert_eq!(DtmfKey::from_char('x'), None);
        assert_eq!(" 9 ".parse(), Ok(DtmfKey::Digit9));
        assert_eq!("Flash".parse(), Ok(DtmfKey::Flash));
        for bad in ["", "12", "x", "é", "one"] {
            assert_eq!(
                bad.parse::<DtmfKey>(),
                Err(ParseDtmfKeyError::Invalid(bad.to_owned()))
            );
        }
    }

    /// Event codes: mostly four DTMF keys (so at most 8 × 4 = 32 distinct
    /// events, all of which the assembler remembers), sometimes any byte.
    fn code() -> impl Strategy<Value = u8> {
        prop_oneof![4 => 0u8..4, 1 => any::<u8>().prop_map(|c| c.max(17))]
    }

    proptest! {
        #[test]
        fn any_packet_sequence_never_panics_and_reports_each_event_once(
            packets in proptest::collection::vec(
                (0u64..8, code(), any::<bool>(), 0u64..70_000, 0u64..2_000, any::<bool>()),
                0..200,
            )
        ) {
            let mut dtmf = DtmfAssembler::new(DtmfConfig::default());
            let base = Instant::now();
            let mut t = 0;
            let mut digits = 0usize;
            let mut events = std::collections::HashSet::new();
            for (start, code, end, dur, dt, timeout) in packets {
                t += dt;
                let now = base + ms(t);
                // Few distinct starts, so repeats and reordering are common; starts
                // three apart are 0xFFFF apart, as segments are.
                let start = start * 0x5555;
                if code <= 16 {
                    events.insert((start, code));
                }
                digits += usize::from(
                    dtmf.handle_packet(start, code, end, ms(dur), now).is_some(),
                );
                if timeout {
                    while let Some(_d) = dtmf.handle_timeout(now) {
                        digits += 1;
                    }
                }
                prop_assert!(dtmf.open.len() <= MAX_OPEN);
                prop_assert!(dtmf.reported.len() <= REMEMBERED_EVENTS);
            }
            let end = base + ms(t + 1_000);
            while let Some(_d) = dtmf.handle_timeout(end) {
                digits += 1;
            }
            prop_assert!(dtmf.poll_timeout().is_none());
            // At most 32 distinct events: each is reported at most once.
            prop_assert!(digits <= events.len());
        }
    }
}

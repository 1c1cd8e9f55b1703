//! The announcement track: where the rules require the announcement to be
//! in the recording itself (`announcement_in_recording`: US-WA, US-CT),
//! the prompts the bot plays go into the call's recording as a track of
//! their own, `audio/hearken-prompts.opus`, aligned to call time zero like
//! every participant's.
//!
//! Sans-IO, in call time (48 kHz samples). The shell tells the conference
//! of every prompt packet it wrote into an m-line (its due time, not when
//! it was handed over); [`Announcer::admit`] says which of them belong in
//! the track:
//!
//! - **From the moment the requirement is known.** Prompts played before
//!   (a participant's location that arrives late) are not recorded; the
//!   consent audit log already lists them (`prompt_played`). A prompt
//!   playing at that moment is recorded from there on. Once required, the
//!   track stays required for the rest of the call (the recording already
//!   holds the voice of whoever required it).
//! - **Once, not once per m-line.** A prompt played to several m-lines at
//!   once is one playback on the track: a packet whose place on the track
//!   is already written is a copy and is left out.
//! - **One prompt at a time, never spliced.** The first playback recorded
//!   holds the track until its end; a prompt that starts while it plays
//!   (a late joiner's notice on another m-line) is left out whole rather
//!   than mixed in or spliced after it. A playback joins the track only at
//!   its first packet (or, if it was already playing when the requirement
//!   became known, at its first packet after that).
//!
//! These frames are the bot's own speech: no consent gate applies to them,
//! and they are never transcribed.

use serde::{Deserialize, Serialize};

use crate::consent::engine::PromptKind;

/// File stem of the announcement track (`audio/hearken-prompts.opus`); no
/// participant's track is ever given it.
pub const ANNOUNCEMENT_STEM: &str = "hearken-prompts";

/// The announcement track as `call.json` states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncementSummary {
    /// Call time (s) from which the rules required the announcement in the
    /// recording (prompts played before are in the audit log only).
    pub required_from: f64,
    /// The track, relative to the call directory; absent while no prompt
    /// has been recorded (or when the call's recordings were discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Prompts recorded in it (a prompt played to several m-lines at once
    /// counts once).
    pub prompts: u32,
    /// Seconds of prompt audio recorded in it.
    pub prompt_seconds: f64,
    /// Seconds of call timeline the track covers, from call time zero
    /// (filled by the recorder, like a participant's `recorded_seconds`).
    pub recorded_seconds: f64,
}

/// One prompt playing into an m-line, in call time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Playing {
    prompt: PromptKind,
    start: u64,
    end: u64,
}

/// Which prompt packets go into the announcement track (see the module
/// docs).
#[derive(Debug, Default)]
pub struct Announcer {
    required_from: Option<u64>,
    /// The playback that holds the track.
    owner: Option<Playing>,
    /// End of the last packet recorded.
    until: u64,
    samples: u64,
    prompts: u32,
}

impl Announcer {
    /// The rules require the announcement in the recording from call time
    /// `t` on (a later call changes nothing).
    pub fn require(&mut self, t: u64) {
        self.required_from.get_or_insert(t);
    }

    /// Since when the track is required, if it is.
    pub fn required_from(&self) -> Option<u64> {
        self.required_from
    }

    /// Whether a packet of `prompt`, whose playback into one m-line runs
    /// from `start` to `end`, due at `position` and `samples` long, goes
    /// into the track (all in call time).
    pub fn admit(
        &mut self,
        prompt: PromptKind,
        start: u64,
        end: u64,
        position: u64,
        samples: u32,
    ) -> bool {
        let Some(since) = self.required_from else {
            return false;
        };
        let this = Playing { prompt, start, end };
        let same = self
            .owner
            .is_some_and(|o| o.prompt == prompt && o.start == start);
        if !same {
            if self.owner.is_some_and(|o| position < o.end) {
                // Another prompt holds the track until it ends.
                return false;
            }
            if position != start && start >= since {
                // Its start was not recorded: never a tail on its own.
                return false;
            }
            self.owner = Some(this);
            self.prompts += 1;
        }
        if position < self.until {
            // Already written: the same prompt on another m-line.
            return false;
        }
        self.until = position + u64::from(samples);
        self.samples += u64::from(samples);
        true
    }

    /// What `call.json` says of the track once it is required (`file` is
    /// set when a prompt was recorded; the recorder fills in
    /// `recorded_seconds`).
    pub fn summary(&self) -> Option<AnnouncementSummary> {
        let rate = crate::conference::SAMPLE_RATE as f64;
        let since = self.required_from?;
        Some(AnnouncementSummary {
            required_from: since as f64 / rate,
            file: (self.prompts > 0).then(|| format!("audio/{ANNOUNCEMENT_STEM}.opus")),
            prompts: self.prompts,
            prompt_seconds: self.samples as f64 / rate,
            recorded_seconds: 0.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u32 = 960;

    /// Every packet of a 5-packet prompt from `start`, as admitted.
    fn play(a: &mut Announcer, prompt: PromptKind, start: u64) -> Vec<u64> {
        let end = start + 5 * u64::from(P);
        (0..5)
            .map(|k| start + k * u64::from(P))
            .filter(|&pos| a.admit(prompt, start, end, pos, P))
            .collect()
    }

    #[test]
    fn nothing_is_admitted_before_the_requirement() {
        let mut a = Announcer::default();
        assert!(play(&mut a, PromptKind::Notice, 0).is_empty());
        assert_eq!(a.summary(), None);
    }

    #[test]
    fn a_prompt_on_two_m_lines_is_recorded_once() {
        let mut a = Announcer::default();
        a.require(0);
        let end = 5 * u64::from(P);
        let mut kept = Vec::new();
        // Two m-lines play the same notice from 0; their packets interleave.
        for k in 0..5u64 {
            for _line in 0..2 {
                if a.admit(PromptKind::Notice, 0, end, k * 960, P) {
                    kept.push(k * 960);
                }
            }
        }
        assert_eq!(kept, vec![0, 960, 1920, 2880, 3840]);
        let s = a.summary().unwrap();
        assert_eq!(s.prompts, 1);
        assert_eq!(s.prompt_seconds, 0.1);
        assert_eq!(s.file.as_deref(), Some("audio/hearken-prompts.opus"));
    }

    #[test]
    fn a_prompt_starting_while_another_plays_is_left_out_whole() {
        let mut a = Announcer::default();
        a.require(0);
        // A notice from 0 to 4800; another from 2000 (a late joiner).
        let end = 4800;
        let mut first = Vec::new();
        let mut second = Vec::new();
        for k in 0..5u64 {
            if a.admit(PromptKind::Notice, 0, end, k * 960, P) {
                first.push(k * 960);
            }
            let pos = 2000 + k * 960;
            if a.admit(PromptKind::Notice, 2000, 2000 + 4800, pos, P) {
                second.push(pos);
            }
        }
        assert_eq!(first, vec![0, 960, 1920, 2880, 3840]);
        assert!(second.is_empty(), "not spliced after the first: {second:?}");
        // The next prompt, queued on the line after the first, is recorded.
        assert_eq!(
            play(&mut a, PromptKind::ConsentRequest, end),
            vec![4800, 5760, 6720, 7680, 8640]
        );
        assert_eq!(a.summary().unwrap().prompts, 2);
    }

    #[test]
    fn a_prompt_playing_when_required_is_recorded_from_then_on() {
        let mut a = Announcer::default();
        let end = 5 * u64::from(P);
        assert!(!a.admit(PromptKind::Notice, 0, end, 0, P));
        assert!(!a.admit(PromptKind::Notice, 0, end, 960, P));
        a.require(1500);
        let kept: Vec<u64> = (2..5u64)
            .map(|k| k * 960)
            .filter(|&pos| a.admit(PromptKind::Notice, 0, end, pos, P))
            .collect();
        assert_eq!(kept, vec![1920, 2880, 3840]);
        let s = a.summary().unwrap();
        assert_eq!(s.required_from, 1500.0 / 48_000.0);
        assert_eq!(s.prompt_seconds, 3.0 * 960.0 / 48_000.0);
        a.require(99_999);
        assert_eq!(a.required_from(), Some(1500), "required once, from then on");
    }
}

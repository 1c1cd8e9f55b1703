//! A consent prompt being played into one m-line of a session: pre-parsed
//! 20 ms Opus packets written through str0m's `Writer`, each at its time.

use std::time::{Duration, Instant};

use hearken_core::consent::engine::PromptKind;
use hearken_core::prompt::{Prompt, PromptSet};
use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid};

/// One prompt playing into one m-line.
#[derive(Debug)]
pub(crate) struct Playback {
    pub mid: Mid,
    pub kind: PromptKind,
    /// The participant who hears it.
    pub to: String,
    /// Index of the next packet.
    pub next: usize,
    /// When the next packet is due.
    pub next_at: Instant,
    /// RTP time of the next packet (48 kHz, from 0).
    pub rtp_time: u64,
    pub started: Instant,
}

/// What writing the due packets of a playback came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More packets to come.
    Playing,
    /// Every packet was written and played out.
    Finished,
    /// The m-line stopped taking packets (the prompt ends early).
    Stopped,
}

impl Playback {
    /// A playback of `kind` to `to` starting at `now`.
    pub fn new(mid: Mid, kind: PromptKind, to: String, now: Instant) -> Self {
        Self {
            mid,
            kind,
            to,
            next: 0,
            next_at: now,
            rtp_time: 0,
            started: now,
        }
    }

    /// Writes every packet due at `now` into `rtc`.
    pub fn write_due(&mut self, rtc: &mut Rtc, prompts: &PromptSet, now: Instant) -> Progress {
        let prompt = prompt_of(prompts, self.kind);
        while self.next_at <= now {
            let Some(packet) = prompt.packets.get(self.next) else {
                return Progress::Finished;
            };
            let written = rtc.writer(self.mid).and_then(|w| {
                let pt = w
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt())?;
                w.write(
                    pt,
                    now,
                    MediaTime::new(self.rtp_time, Frequency::FORTY_EIGHT_KHZ),
                    packet.data.clone(),
                )
                .ok()
            });
            if written.is_none() {
                return Progress::Stopped;
            }
            self.rtp_time += u64::from(packet.samples);
            self.next += 1;
            self.next_at += Duration::from_micros(u64::from(packet.samples) * 1_000_000 / 48_000);
        }
        // The prompt has been heard once the time of its last packet has
        // passed, not when that packet was handed over.
        Progress::Playing
    }
}

/// The prompt of a kind.
pub(crate) fn prompt_of(prompts: &PromptSet, kind: PromptKind) -> &Prompt {
    match kind {
        PromptKind::Notice => &prompts.notice,
        PromptKind::ConsentRequest => &prompts.consent_request,
        PromptKind::Thanks => &prompts.thanks,
        PromptKind::Stopped => &prompts.stopped,
    }
}

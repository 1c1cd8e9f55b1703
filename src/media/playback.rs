//! A consent prompt being played into one m-line of a session: pre-parsed
//! 20 ms Opus packets written through str0m's `Writer`, each at its time.
//!
//! One prompt plays at a time on an m-line: a prompt asked for while
//! another plays starts when it ends, and RTP time runs on across prompts
//! (and the silence between them), so the receiver's jitter buffer sees one
//! continuous stream rather than two overlapping ones.

use std::time::{Duration, Instant};

use hearken_core::consent::engine::PromptKind;
use hearken_core::prompt::{Prompt, PromptPacket, PromptSet};
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
    /// When its last packet ends.
    pub ends: Instant,
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

/// Where the prompts of one m-line stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PromptLine {
    /// When the last prompt queued on it ends.
    pub free_at: Instant,
    /// RTP time (48 kHz) at `free_at`.
    pub rtp_at_free: u64,
}

impl Playback {
    /// A playback of `kind` to `to`: now, or when the prompt that `line`
    /// plays (if any) ends; `line` then ends with this one.
    pub fn queued(
        mid: Mid,
        kind: PromptKind,
        to: String,
        line: &mut Option<PromptLine>,
        prompts: &PromptSet,
        now: Instant,
    ) -> Self {
        let (start, rtp_time) = match *line {
            Some(l) if l.free_at > now => (l.free_at, l.rtp_at_free),
            // Silence since the last prompt still advances RTP time.
            Some(l) => (now, l.rtp_at_free + samples_in(now - l.free_at)),
            None => (now, 0),
        };
        let samples: u64 = prompt_of(prompts, kind)
            .packets
            .iter()
            .map(|p| u64::from(p.samples))
            .sum();
        let ends = start + Duration::from_micros(samples * 1_000_000 / 48_000);
        *line = Some(PromptLine {
            free_at: ends,
            rtp_at_free: rtp_time + samples,
        });
        Self {
            mid,
            kind,
            to,
            next: 0,
            next_at: start,
            rtp_time,
            started: start,
            ends,
        }
    }

    /// Writes every packet due at `now` into `rtc`; tells `written` of each
    /// one with the time it was due.
    pub fn write_due(
        &mut self,
        rtc: &mut Rtc,
        prompts: &PromptSet,
        now: Instant,
        written: impl FnMut(Instant, &PromptPacket),
    ) -> Progress {
        let mid = self.mid;
        self.play_due(
            prompts,
            now,
            |rtp_time, _, packet| {
                rtc.writer(mid)
                    .and_then(|w| {
                        let pt = w
                            .payload_params()
                            .find(|p| p.spec().codec == Codec::Opus)
                            .map(|p| p.pt())?;
                        w.write(
                            pt,
                            now,
                            MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ),
                            packet.data.clone(),
                        )
                        .ok()
                    })
                    .is_some()
            },
            written,
        )
    }

    /// Hands every packet due at `now` to `send` (with its RTP time, 48 kHz,
    /// and its index in the prompt; `false`: the line takes no more), then
    /// tells `written` of it with the time it was due. For lines that are
    /// not str0m's (SIP).
    pub fn play_due(
        &mut self,
        prompts: &PromptSet,
        now: Instant,
        mut send: impl FnMut(u64, usize, &PromptPacket) -> bool,
        mut written: impl FnMut(Instant, &PromptPacket),
    ) -> Progress {
        let prompt = prompt_of(prompts, self.kind);
        while self.next_at <= now {
            let Some(packet) = prompt.packets.get(self.next) else {
                return Progress::Finished;
            };
            if !send(self.rtp_time, self.next, packet) {
                return Progress::Stopped;
            }
            written(self.next_at, packet);
            self.rtp_time += u64::from(packet.samples);
            self.next += 1;
            self.next_at += Duration::from_micros(u64::from(packet.samples) * 1_000_000 / 48_000);
        }
        // The prompt has been heard once the time of its last packet has
        // passed, not when that packet was handed over.
        Progress::Playing
    }
}

fn samples_in(d: Duration) -> u64 {
    (d.as_micros() * 48_000 / 1_000_000) as u64
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

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts() -> PromptSet {
        crate::setup::consent::load_prompts("en", None).expect("built-in prompts")
    }

    fn samples(prompts: &PromptSet, kind: PromptKind) -> u64 {
        prompt_of(prompts, kind)
            .packets
            .iter()
            .map(|p| u64::from(p.samples))
            .sum()
    }

    #[test]
    fn a_prompt_asked_for_while_another_plays_starts_where_it_ends() {
        let prompts = prompts();
        let mid = Mid::from("0");
        let now = Instant::now();
        let mut line = None;
        let first = Playback::queued(
            mid,
            PromptKind::Notice,
            "a".into(),
            &mut line,
            &prompts,
            now,
        );
        let second = Playback::queued(
            mid,
            PromptKind::ConsentRequest,
            "a".into(),
            &mut line,
            &prompts,
            now + Duration::from_millis(100),
        );
        let notice = samples(&prompts, PromptKind::Notice);
        assert_eq!(first.rtp_time, 0);
        assert_eq!(second.rtp_time, notice, "RTP time runs on");
        assert_eq!(
            second.started,
            now + Duration::from_micros(notice * 1_000_000 / 48_000),
            "the second waits for the first to end"
        );
    }

    #[test]
    fn silence_between_prompts_advances_rtp_time() {
        let prompts = prompts();
        let mid = Mid::from("0");
        let now = Instant::now();
        let mut line = None;
        Playback::queued(
            mid,
            PromptKind::Thanks,
            "a".into(),
            &mut line,
            &prompts,
            now,
        );
        let thanks = samples(&prompts, PromptKind::Thanks);
        let ends = now + Duration::from_micros(thanks * 1_000_000 / 48_000);
        let later = Playback::queued(
            mid,
            PromptKind::Stopped,
            "a".into(),
            &mut line,
            &prompts,
            ends + Duration::from_secs(2),
        );
        assert_eq!(later.rtp_time, thanks + 2 * 48_000);
    }
}

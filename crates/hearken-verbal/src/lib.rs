//! Verbal consent, heard locally.
//!
//! During a consent request a participant's own audio goes to a small
//! recogniser on this machine: pocketsphinx (Debian's `libpocketsphinx3` and
//! the `pocketsphinx-en-us` model) with a grammar per language. Nothing leaves
//! the machine.
//!
//! # The run loop
//!
//! ```text
//! decoded Opus, 48 kHz ──► Listener::handle_pcm ──► poll_event: Utterance
//!                                                        │ (bounded queue)
//!                                                        ▼
//!                        Recogniser thread: VerbalModel::recognise ──► Option<Answer>
//! ```
//!
//! 1. A [`Listener`] per participant and request takes 48 kHz mono PCM,
//!    converts it to the 16 kHz the model needs ([`resample`]) and cuts it
//!    into utterances by level: speech starts after 30 ms of voiced frames
//!    and ends after 700 ms of silence, at 6 s of speech, or when the
//!    listening time (15 s) runs out. It is sans-IO, counts time in samples
//!    and costs a filter and an energy per 10 ms.
//! 2. [`VerbalModel::recognise`] decodes an utterance. It is CPU work (see
//!    "Cost") and must not run on a media thread. The model is not `Send`
//!    (pocketsphinx is a C object), so it lives on the thread that loaded it:
//!    [`Recogniser`] is that thread, fed through a bounded queue with
//!    [`Recogniser::try_submit`].
//! 3. An accepted [`Answer`] carries the decision, the phrase, a confidence
//!    and the [`SampleSpan`] of the audio it was decided on: the caller keeps
//!    the Opus packets that overlap it ([`SampleSpan::overlaps`]) as the
//!    evidence clip, only for a yes.
//!
//! A language without a grammar ([`languages`]) and a missing model are
//! typed [`LoadError`]s that say what is missing (for a model: which Debian
//! package), so the server starts without verbal consent and says why.
//!
//! # Rejection
//!
//! A grammar decoder always finds its best phrase, whatever was said: "the
//! weather is nice today" comes out as "i agree". So each utterance is
//! decoded three times, by one decoder with three searches:
//!
//! - `yes`: the consenting phrases only,
//! - `notyes`: the refusing phrases, a few look-alikes that are not an answer
//!   ("I see", "I guess", "yesterday") and "nothing" (silence alone, noise
//!   alone),
//! - `phones`: any sequence of the model's phones (a phone loop), which
//!   explains any speech about as well as it can be explained.
//!
//! With every senone scored every frame (`-compallsen yes`), the three path
//! scores are comparable. Per 10 ms frame, in nats:
//!
//! - **confidence** = (best phrase − phone loop) / frames. A real answer is
//!   explained almost as well by its phrase as by free phones; unrelated
//!   speech forced into a phrase is explained much worse.
//! - **margin** = (best phrase − best phrase of the other search) / frames.
//!   This separates "I agree" from "I do not agree" and "I disagree", "yes"
//!   from "I see", and an answer from noise (which silence alone explains
//!   better).
//!
//! An answer is accepted when confidence ≥ −0.45 and margin ≥ 0.15
//! ([`Thresholds::default`]); otherwise the utterance is not an answer and
//! the listener goes on listening. If a look-alike or "nothing" wins, it is
//! not an answer either. The thresholds are the same for yes and no.
//!
//! Where they come from: 26 phrases said by espeak-ng (voices en-us,
//! en-us+f3, en-us+m3 and the British en, 140 to 180 words a minute),
//! straight and through Opus at 24 kbit/s: 348 cases. Consenting phrases scored confidence −0.34 to +0.62 with margin
//! ≥ 0.25; unrelated speech that the yes grammar won scored at most −0.73
//! ("sorry"), and "I see" at most −0.61 before it became a look-alike;
//! refusals never scored a yes above their refusal (margin ≤ −0.12), and
//! "hello" came out as "no" at −0.49 (so not −0.5). So
//! −0.45 sits between the weakest real yes and the strongest false one, with
//! the margin as a second gate. A wrong yes is the dangerous error; a missed
//! answer costs less (the participant can press a key, or be asked again):
//! a bare "no" or "no thanks" is often too short to be sure of and comes out
//! as no answer, so the prompt should ask for "I agree" or "I do not agree".
//! Known limit: espeak-ng's British voice saying "I guess" was taken as yes
//! (confidence −0.12): speech far from the model's US English is less
//! predictable, and the thresholds should be measured again on recordings of
//! real callers.
//!
//! Two more things keep the grammar honest: silence is the only filler (the
//! model's `[SPEECH]` filler would let "I agree" swallow "do not"), and a
//! result that is not one whole phrase (pocketsphinx returns a partial path
//! when no path reached the grammar's end) counts as no result.
//!
//! # Cost
//!
//! Loading reads the 3 MB dictionary once and the acoustic model; decoding
//! runs three searches with every senone scored. `tests/speech.rs`
//! (`decode_cost`) measures both. On this project's 2-core machine, busy
//! with other builds: loading 0.2 to 0.26 s; decoding 0.5 s for 1 s of
//! audio, 1.0 s for 1.7 s, 1.4 s for 3.8 s (real-time factor 0.4 to 0.6).
//! On a quiet core the same three searches took 45 to 220 ms for 0.6 to
//! 2.3 s (about 0.1). One model serves one thread's utterances in turn:
//! reuse it (the decisions do not depend on what it heard before), never load
//! one per utterance.
//!
//! # The `pocketsphinx` crate
//!
//! Only its safe calls that are sound are used: `seg_iter` and `nbest` read a
//! segment after pocketsphinx has freed it (they advance before yielding), so
//! word timings come from the listener, not from the decoder.

mod error;
mod language;
mod listener;
mod model;
pub mod resample;
mod worker;

pub use error::{DecodeError, LoadError, SubmitError};
pub use listener::{
    EndReason, INPUT_RATE, ListenConfig, ListenEvent, Listener, MODEL_RATE, SampleSpan, Utterance,
};
pub use model::{
    Answer, Decision, ModelFiles, PhraseScore, Scores, Thresholds, VerbalModel, languages,
};
pub use worker::{Job, Recognised, Recogniser};

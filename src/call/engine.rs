//! The call state machine. Events in, actions out; time is whatever `now` the driver says.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;

use super::policy::{self, CallCounters, Decision, Reason, TurnSignals};
use super::readback::{self, Field, Reply};
use super::turn_end::{self, Heard, TurnEnd};
use super::{
    Action, CallInfo, DecisionKind, Event, Millis, Record, Speaker, SttFailure, Transcript,
    TranscriptLine,
};
use crate::analysis::intent::{self, IntentSpec};
use crate::analysis::language::{self, Foreign};
use crate::analysis::numbers::{self, Facts};
use crate::analysis::tone::{ToneLabel, ToneTracker};
use crate::analysis::{agent_request, feedback, sentiment};
use crate::audio::Prosody;
use crate::audio::error::AudioError;
use crate::audio::frontend::{Frontend, FrontendConfig, FrontendEvent, Utterance};
use crate::dialplan::Dialplan;
use crate::handoff::{self, ContextCard, Handoff, Priority, SentimentSummary, SummaryInput};
use crate::prompts::{Prompt, PromptLibrary};
use crate::stt::{NUMBER_PASS_PROMPT, NumberPass, SHORT_PASS_PROMPT, SttMode};

/// Everything calls on one line share: dialplan, prompts, and what is derived from them once.
#[derive(Debug)]
pub struct Playbook {
    pub dialplan: Dialplan,
    pub prompts: PromptLibrary,
    pub frontend: FrontendConfig,
    /// Fragments for sentences with a number in them (the read-back); without them the line
    /// never reads a number back.
    pub speech: Option<Arc<crate::speech::Speech>>,
    intents: Vec<IntentSpec>,
    answers: Vec<IntentSpec>,
    stt_prompt: Arc<str>,
    /// How a short, unclear utterance is heard the second time.
    pub short_pass: ShortPass,
    /// How a turn with a number in it is heard again (`[stt] number_pass`, see
    /// [`Engine::number_pass`]).
    pub number_pass: NumberPass,
}

/// The second pass over a short utterance the first pass did not make sense of.
///
/// Measured on the hard words (`tests/hard_words.rs`, 14 voices × 6 escape words, 2 vCPU Xeon
/// under load): the constrained pass put 60/84 through (Piper 18/18, flite 28/36, espeak-ng
/// 14/30), 0 false transfers of 112; the prompted pass 66/84 when last measured (2 vCPU AMD
/// EPYC). tiny.en hears espeak-ng's "Agent." as "Hey, good." so firmly that the forced
/// "Agent." scores below the floor, where the prompt makes it write "Agent." outright; so the
/// prompted pass stays the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortPass {
    /// A free decode with the escape words as Whisper's prompt; an escape word it writes at
    /// [`SHORT_PASS_MIN_CONFIDENCE`] is taken.
    #[default]
    Prompted,
    /// A decode held to one escape word ([`SttMode::EscapeWord`]), taken when the forced path
    /// scores at least [`CONSTRAINED_MIN_SCORE`] against the model's own choices.
    Constrained,
    /// The prompted pass, then, when it heard no escape word, the constrained one: each
    /// recognizes words the other misses, and neither sent a short non-request word to a
    /// person on the hard-words set.
    Both,
}

impl Playbook {
    pub fn new(dialplan: Dialplan, prompts: PromptLibrary, frontend: FrontendConfig) -> Playbook {
        Playbook {
            intents: dialplan.intent_specs(),
            answers: dialplan.answer_specs(),
            stt_prompt: dialplan.stt_prompt().into(),
            dialplan,
            prompts,
            frontend,
            speech: None,
            short_pass: ShortPass::default(),
            number_pass: NumberPass::default(),
        }
    }

    pub fn with_speech(mut self, speech: Arc<crate::speech::Speech>) -> Playbook {
        self.speech = Some(speech);
        self
    }
}

/// A prompt that is playing: sent to the provider, its mark not yet echoed.
#[derive(Debug, Clone)]
struct Playing {
    mark: String,
    prompt: String,
    started: Millis,
    duration: Millis,
}

/// Prompts whose mark never comes back (a provider that lost it) still end, this long after
/// their audio should have finished.
const MARK_GRACE_MS: Millis = 3_000;

/// A routine transfer whose caller has not given an account or order number waits this long
/// after their utterance ended (counted from its detection, so it overlaps transcription) in
/// case they are only pausing between sentences: "My internet keeps dropping. [pause] My
/// account number is…". Urgent transfers never wait.
const CONTINUATION_MS: Millis = 700;

/// Utterances up to this long (16 kHz samples, 2.5 s) get a second pass when unclear: one or
/// two words, where tiny.en is weakest.
const SHORT_PASS_MAX_SAMPLES: usize = 40_000;

/// A first pass at or above this confidence is taken as heard.
const SHORT_PASS_BELOW_CONFIDENCE: f32 = 0.7;

/// The second pass's escape word must be this sure: the prompt makes Whisper say its words.
const SHORT_PASS_MIN_CONFIDENCE: f32 = 0.5;

/// A constrained second pass is taken at or above this [`crate::stt::constrained::PathScore`]
/// confidence: the escape word it was forced to must have been nearly the model's own choice.
/// Measured on the hard words (Piper joe, 2 speeds): escape words scored 0.72–1.0, the closest
/// non-request word ("Urgent." forced to "agent.") 0.34, the rest ≤ 0.03.
const CONSTRAINED_MIN_SCORE: f32 = 0.6;

/// Whether a second-pass transcript is one escape word (perhaps repeated), and sure of it.
fn is_lone_escape_word(t: &Transcript, pass: ShortPass) -> bool {
    let floor = match pass {
        ShortPass::Prompted | ShortPass::Both => SHORT_PASS_MIN_CONFIDENCE,
        ShortPass::Constrained => CONSTRAINED_MIN_SCORE,
    };
    t.confidence >= floor && agent_request::is_lone_request(&clean_transcript(&t.text))
}

/// A short utterance being heard again ([`Engine::second_pass`]).
#[derive(Debug)]
struct Rehearing {
    first: Transcript,
    /// The pass now running.
    pass: ShortPass,
    /// Its audio, kept while a constrained pass may still follow the prompted one.
    audio: Option<(Vec<f32>, Millis)>,
}

/// The transcript line for speech Whisper heard as another language.
const FOREIGN_SPEECH_LINE: &str = "[speaking a language other than English]";

/// A transcription started at a pause, before the endpoint.
#[derive(Debug)]
struct Early {
    id: u64,
    start_ms: u64,
    end_ms: u64,
    samples: usize,
    result: Option<Result<Transcript, SttFailure>>,
    /// What its transcript says about the turn, once it is in: act without the endpoint?
    act_now: Option<turn_end::Why>,
}

impl Early {
    /// Whether the utterance the endpoint cut is the audio this transcription was given.
    fn covers(&self, u: &Utterance) -> bool {
        (self.start_ms, self.end_ms, self.samples) == (u.start_ms, u.end_ms, u.samples.len())
    }
}

/// When the caller stopped speaking, on the engine's clock: `now` is when the frontend
/// reported `u`, which it did `detected_ms - end_ms` after the last voiced frame.
fn speech_ended(u: &Utterance, now: Millis) -> Millis {
    now.saturating_sub(u.detected_ms.saturating_sub(u.end_ms))
}

/// A decided transfer waiting for the caller's next sentence.
#[derive(Debug, Clone, Copy)]
struct Held {
    reason: Reason,
    priority: Priority,
    deadline: Millis,
    /// When the hold began: a caller who keeps talking is still put through after
    /// [`MAX_HOLD_MS`].
    since: Millis,
}

/// A number read back gets this long after the question ends for a reply; then the caller
/// goes through with the number marked unconfirmed.
const READBACK_REPLY_MS: Millis = 2_500;

/// A read-back waiting for the caller's reply.
#[derive(Debug, Clone)]
struct Confirming {
    field: Field,
    reason: Reason,
    priority: Priority,
    /// The caller said "no" once and was asked to say it again.
    asked_again: bool,
}

/// How far past the held words a continuation heard on its own starts, so no end of the last
/// held word leaks into it as a stray syllable.
const TAIL_SKIP_MS: u64 = 100;

/// Silence after which a turn already decided by its words is acted on. Shorter than any
/// endpoint, yet longer than most breaths between two sentences of one turn ("Agent. Agent!
/// Get me an agent."), which a cut would split.
const ACT_AT_PAUSE_MS: Millis = 300;

/// Silence after which a request for a person seen at the quick look is acted on: the same
/// as for the pause transcript, since the breath in "Agent. Agent! Get me an agent." is as
/// long (200 ms was tried: replay fixture `repeated_agent_joe` went through on its first
/// "Agent." as a plain request). What the look saves is the wait for Whisper: its transcript
/// is in ~120 ms after the pause starts instead of ~220 ms + the transcription, so the turn
/// ends when the silence reaches this, not when the model is done.
const QUICK_ACT_MS: Millis = ACT_AT_PAUSE_MS;

/// The longest a routine transfer waits for a caller who keeps adding sentences. It only
/// waits while they talk (one who stops goes through [`CONTINUATION_MS`] later), and a caller
/// reading a ten-digit account number one digit per breath talks for ~10 s: 8 s cut two of
/// the 72 numbers of `tests/digit_recall.rs` short mid-number (card 28/72 → 30/72 at 15 s).
const MAX_HOLD_MS: Millis = 15_000;

/// A turn the caller has not finished ("My account number is 4 4 7…"): what they said so far,
/// waiting for the rest.
#[derive(Debug, Clone)]
struct Unfinished {
    text: String,
    confidence: f32,
    /// Words so far, to weigh each part's confidence by how much of the turn it is.
    words: usize,
    prosody: Option<Prosody>,
    detected: Millis,
    /// The silence after which the line answers what it has.
    deadline: Millis,
    /// Parts joined so far.
    parts: u32,
}

/// A caller who keeps leaving half-thoughts is answered after this many parts, however the
/// last one ends: the wait is for a pause, not for a monologue.
const MAX_UNFINISHED_PARTS: u32 = 6;

/// A pause held open mid-utterance: where, and what the caller had said by then.
#[derive(Debug, Clone, Default)]
struct HoldMark {
    /// The end of speech at the pause, in stream time.
    end_ms: u64,
    /// The pause's own transcript: the words before the hold.
    before: String,
}

/// One utterance waiting for its transcript, in the order the caller spoke.
#[derive(Debug, Clone, Default)]
struct Pending {
    /// Where its speech ended, in stream time.
    end_ms: u64,
    /// The first pause in it that was held open: Whisper may drop what came after it.
    held_at: Option<HoldMark>,
    prosody: Prosody,
    /// When its end was detected (on the engine's clock).
    detected: Millis,
    /// When the caller stopped speaking.
    speech_ended: Millis,
}

/// Speech that starts this soon into a prompt is probably the caller finishing their previous
/// sentence, not an interruption.
const BARGE_IN_GUARD_MS: Millis = 300;

pub struct Engine {
    info: CallInfo,
    book: Arc<Playbook>,
    frontend: Frontend,
    frontend_events: Vec<FrontendEvent>,
    done: bool,
    playing: Option<Playing>,
    /// A prompt the caller talked over, replayed if what they said turns out to be noise.
    interrupted: Option<String>,
    goodbye_mark: Option<String>,
    /// The goodbye has played, but the caller was talking over it: what they said is heard
    /// before hanging up ("wait — agent!").
    goodbye_played: bool,
    next_mark: u32,
    next_utterance: u64,
    /// Utterances sent for transcription, by id: how they sounded, when their end was detected.
    pending: BTreeMap<u64, Pending>,
    held: Option<Held>,
    /// A half-finished turn waiting for the rest (semantic turn-taking).
    unfinished: Option<Unfinished>,
    /// The first pause held open in the utterance now open.
    hold_mark: Option<HoldMark>,
    /// Transcripts of held utterances, and what was heard before the hold, while the audio
    /// after the hold is transcribed on its own.
    tail_pass: BTreeMap<u64, (Transcript, String)>,
    /// A number read back, waiting for "yes" or the right one.
    confirming: Option<Confirming>,
    /// The read-back was done (once per call, whatever came of it).
    read_back: bool,
    /// How sure the line was of the turn its latest id number came from.
    id_confidence: f32,
    /// Facts the caller did not confirm when read back (named as on the card).
    unconfirmed: Vec<String>,
    /// Transcriptions that came back before an earlier one: turns are handled in order.
    arrived: BTreeMap<u64, Result<Transcript, SttFailure>>,
    /// The transcription started at the caller's latest pause, while the utterance is open.
    early: Option<Early>,
    /// A first look at a short utterance 100 ms into its silence, while it is open: only an
    /// unmistakable request for a person is acted on from it.
    quick: Option<Early>,
    /// The pause transcript, held back while the quick look at the same audio runs: two
    /// transcriptions of one short utterance at once would take both decoder states and the
    /// second would be refused. Sent when the quick look decides nothing.
    deferred_pause: Option<Action>,
    /// Utterances that ended exactly where their early transcription began, which is still
    /// running: their audio, in case it fails and has to be transcribed again.
    early_fallback: BTreeMap<u64, (Vec<f32>, Millis)>,
    in_speech: bool,
    last_activity: Millis,
    silence_prompts: u32,
    counters: CallCounters,
    /// When the caller last got somewhere (the call began, or a self-serve answer they did
    /// not reject): the no-progress clock runs from here.
    progress_at: Millis,
    /// `progress_at` before the latest answer, restored if the caller rejects that answer.
    progress_before_answer: Millis,
    /// The self-serve answer given in reply to the caller's previous turn, if any.
    last_answer: Option<String>,
    /// Audio of short utterances, by id, until their transcript is in: one that says nothing
    /// understood is heard again with the escape-word vocabulary.
    short_audio: BTreeMap<u64, (Vec<f32>, Millis)>,
    /// The id field the caller's last turn named without its number ("…order number?"): a
    /// bare number in the next turn is that one.
    open_field: Option<numbers::OpenField>,
    /// Utterances being heard a second time: the first pass, and the audio while a further
    /// pass may follow.
    first_pass: BTreeMap<u64, Rehearing>,
    /// Audio of every utterance, by id, until its turn is taken: one whose transcript shows a
    /// number being given is heard again (see [`Engine::number_pass`]).
    number_audio: BTreeMap<u64, (Vec<f32>, Millis)>,
    /// Transcripts (joined with any continuation) of utterances being heard again, and how.
    number_first: BTreeMap<u64, (Transcript, SttMode)>,
    tone: ToneTracker,
    facts: Facts,
    intent: Option<String>,
    gist: Option<String>,
    tried: Vec<String>,
    transcript: Vec<TranscriptLine>,
}

impl Engine {
    pub fn new(info: CallInfo, book: Arc<Playbook>) -> Result<Engine, AudioError> {
        let frontend = Frontend::new(book.frontend.clone())?;
        Ok(Engine {
            info,
            book,
            frontend,
            frontend_events: Vec::new(),
            done: false,
            playing: None,
            interrupted: None,
            goodbye_mark: None,
            goodbye_played: false,
            next_mark: 0,
            next_utterance: 0,
            pending: BTreeMap::new(),
            held: None,
            unfinished: None,
            hold_mark: None,
            tail_pass: BTreeMap::new(),
            confirming: None,
            read_back: false,
            id_confidence: 1.0,
            unconfirmed: Vec::new(),
            arrived: BTreeMap::new(),
            early: None,
            quick: None,
            deferred_pause: None,
            early_fallback: BTreeMap::new(),
            in_speech: false,
            last_activity: 0,
            silence_prompts: 0,
            counters: CallCounters::default(),
            progress_at: 0,
            progress_before_answer: 0,
            last_answer: None,
            short_audio: BTreeMap::new(),
            first_pass: BTreeMap::new(),
            open_field: None,
            number_audio: BTreeMap::new(),
            number_first: BTreeMap::new(),
            tone: ToneTracker::default(),
            facts: Facts::default(),
            intent: None,
            gist: None,
            tried: Vec::new(),
            transcript: Vec::new(),
        })
    }

    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// True once the call was transferred or hung up: later events are ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn transcript(&self) -> &[TranscriptLine] {
        &self.transcript
    }

    /// The mark of the prompt playing now, if any.
    pub fn playing_mark(&self) -> Option<String> {
        self.playing.as_ref().map(|p| p.mark.clone())
    }

    /// True while a prompt's audio is (as far as the engine knows) still playing.
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// The call has been answered: greet the caller.
    pub fn start(&mut self, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        self.last_activity = now;
        self.progress_at = now;
        self.progress_before_answer = now;
        let greeting = self.book.dialplan.greeting.clone();
        self.play(&greeting, now, &mut out);
        out
    }

    pub fn feed(&mut self, event: Event<'_>, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match event {
            Event::Audio(bytes) => self.on_audio(bytes, now, &mut out),
            Event::Dtmf(digit) => self.on_dtmf(digit, now, &mut out),
            Event::Transcribed { utterance, result } => {
                self.on_transcribed(utterance, result, now, &mut out)
            }
            Event::Mark(name) => self.on_mark(&name, now, &mut out),
            Event::Tick => self.on_tick(now, &mut out),
            Event::Hangup => {
                self.decision(
                    now,
                    DecisionKind::CallerHangup,
                    "the caller ended the call",
                    &mut out,
                );
                self.done = true;
            }
            Event::Fault(why) => {
                tracing::warn!(call_sid = %self.info.call_sid, %why, "fault mid-call: handing over");
                self.decision(now, DecisionKind::Fault, &why, &mut out);
                self.tried.push(format!("the line failed: {why}"));
                self.transfer(Reason::SystemFault, Priority::High, now, &mut out);
            }
            Event::Overloaded => {
                self.decision(
                    now,
                    DecisionKind::Overload,
                    "the line is at capacity",
                    &mut out,
                );
                self.transfer(Reason::Overload, Priority::Normal, now, &mut out);
            }
        }
        out
    }

    fn on_audio(&mut self, bytes: &[u8], now: Millis, out: &mut Vec<Action>) {
        let mut events = std::mem::take(&mut self.frontend_events);
        events.clear();
        self.frontend.push_ulaw_bytes(bytes, &mut events);
        for ev in events.drain(..) {
            match ev {
                FrontendEvent::SpeechStart { .. } => {
                    self.in_speech = true;
                    self.last_activity = now;
                    self.maybe_barge_in(now, out);
                }
                FrontendEvent::QuickPause(u) => {
                    // Any earlier look, and the pause transcript it held back, were of speech
                    // the caller has since gone on from.
                    self.forget_stale_look(u.end_ms);
                    if self.book.dialplan.turns.semantic && self.goodbye_mark.is_none() {
                        let (quick, action) = self.early_look(u, now);
                        self.quick = Some(quick);
                        out.push(action);
                    }
                }
                FrontendEvent::Resumed => self.call_off_look(out),
                FrontendEvent::Pause(u) => {
                    self.forget_stale_look(u.end_ms);
                    let looking = self.quick.as_ref().is_some_and(|q| q.result.is_none());
                    let (early, action) = self.early_look(u, now);
                    self.early = Some(early);
                    if looking {
                        self.deferred_pause = Some(action);
                    } else {
                        out.push(action);
                    }
                }
                FrontendEvent::Utterance(u) => {
                    self.in_speech = false;
                    self.last_activity = now;
                    self.on_utterance(u, now, out);
                }
            }
        }
        self.frontend_events = events;
        self.act_on_quick_look(now, out);
        self.act_at_pause(now, out);
        self.handle_arrived(now, out);
    }

    /// A transcription of the utterance open at a pause, and its record.
    fn early_look(&mut self, u: Utterance, now: Millis) -> (Early, Action) {
        let id = self.next_id();
        let look = Early {
            id,
            start_ms: u.start_ms,
            end_ms: u.end_ms,
            samples: u.samples.len(),
            result: None,
            act_now: None,
        };
        let speech_ended = speech_ended(&u, now);
        (look, self.transcribe(id, u.samples, speech_ended, true))
    }

    /// A finished utterance: its early transcription stands if it covered exactly this audio
    /// and has not failed; otherwise it is transcribed now.
    fn on_utterance(&mut self, u: Utterance, now: Millis, out: &mut Vec<Action>) {
        let speech_ended = speech_ended(&u, now);
        self.quick = None;
        // The quick look did not come back before the endpoint: the pause transcript it held
        // back goes now, and is awaited like any still running.
        out.extend(self.deferred_pause.take());
        let early = self
            .early
            .take()
            .filter(|e| e.covers(&u) && !matches!(e.result, Some(Err(_))));
        let id = match &early {
            Some(e) => e.id,
            None => self.next_id(),
        };
        let held_at = self
            .hold_mark
            .take()
            .filter(|m| (u.start_ms..u.end_ms).contains(&m.end_ms));
        self.pending.insert(
            id,
            Pending {
                end_ms: u.end_ms,
                held_at,
                prosody: u.prosody,
                detected: now,
                speech_ended,
            },
        );
        if u.samples.len() <= SHORT_PASS_MAX_SAMPLES {
            self.short_audio
                .insert(id, (u.samples.clone(), speech_ended));
        }
        // Whole, not cut at a held pause: the number pass hears the utterance as one. Copied
        // out now because the frontend's ring may have moved past it by the time the first
        // transcript (and any continuation pass) is in.
        if self.book.number_pass != NumberPass::Off {
            self.number_audio
                .insert(id, (u.samples.clone(), speech_ended));
        }
        match early.map(|e| e.result) {
            Some(Some(result)) => {
                self.arrived.insert(id, result);
            }
            Some(None) => {
                self.early_fallback.insert(id, (u.samples, speech_ended));
            }
            None => out.push(self.transcribe(id, u.samples, speech_ended, false)),
        }
    }

    /// Utterance ids follow the order the caller spoke in: turns are handled in that order.
    fn next_id(&mut self) -> u64 {
        self.next_utterance += 1;
        self.next_utterance - 1
    }

    fn transcribe(&self, id: u64, samples: Vec<f32>, speech_ended: Millis, early: bool) -> Action {
        Action::Transcribe {
            utterance: id,
            samples,
            initial_prompt: self.book.stt_prompt.clone(),
            mode: SttMode::Free,
            speech_ended,
            early,
        }
    }

    fn on_transcribed(
        &mut self,
        id: u64,
        result: Result<Transcript, SttFailure>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        if let Some(q) = self.quick.as_mut().filter(|q| q.id == id) {
            q.result = Some(result);
            self.judge_quick_look(now, out);
            return;
        }
        if let Some(e) = self.early.as_mut().filter(|e| e.id == id) {
            // The caller has paused but the endpoint has not come: keep it for the endpoint,
            // unless what they said is worth acting on at once.
            e.result = Some(result);
            self.judge_pause(now, out);
            self.act_at_pause(now, out);
            return;
        }
        if let Some((samples, speech_ended)) = self.early_fallback.remove(&id)
            && result.is_err()
        {
            // An early transcription the driver refused or lost: the utterance is whole now,
            // so ask again like any other.
            out.push(self.transcribe(id, samples, speech_ended, false));
            return;
        }
        if self.pending.contains_key(&id) {
            self.arrived.insert(id, result);
        }
        self.handle_arrived(now, out);
    }

    fn maybe_barge_in(&mut self, now: Millis, out: &mut Vec<Action>) {
        let Some(p) = &self.playing else { return };
        if self.goodbye_mark.is_some() || now < p.started + BARGE_IN_GUARD_MS {
            return;
        }
        self.interrupted = Some(p.prompt.clone());
        self.decision(
            now,
            DecisionKind::BargeIn,
            &format!("caller spoke over `{}`", p.prompt),
            out,
        );
        self.playing = None;
        out.push(Action::Clear);
    }

    fn on_dtmf(&mut self, digit: char, now: Millis, out: &mut Vec<Action>) {
        self.line(
            now,
            Speaker::Caller,
            format!("[pressed {digit}]"),
            None,
            None,
            out,
        );
        self.last_activity = now;
        if digit == '0' {
            self.counters.dtmf_zero += 1;
            let priority = if self.counters.dtmf_zero > 1 || self.upset() {
                Priority::High
            } else {
                Priority::Normal
            };
            self.transfer(Reason::Dtmf, priority, now, out);
        }
    }

    fn on_mark(&mut self, name: &str, now: Millis, out: &mut Vec<Action>) {
        if self.playing.as_ref().is_some_and(|p| p.mark == name) {
            self.playing = None;
            self.last_activity = now;
        }
        if self.goodbye_mark.as_deref() == Some(name) {
            if self.caller_still_talking() {
                self.goodbye_played = true;
            } else {
                self.hang_up(now, out);
            }
        }
    }

    fn on_tick(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.goodbye_played {
            if !self.caller_still_talking() {
                self.hang_up(now, out);
            }
            return;
        }
        if self.stalled(now) {
            self.decision(
                now,
                DecisionKind::NoProgress,
                "too long in automation without getting anywhere",
                out,
            );
            let reason = self.counters.stall_reason();
            self.transfer(reason, Priority::Normal, now, out);
            return;
        }
        if let Some(p) = &self.playing {
            if now >= p.started + p.duration + MARK_GRACE_MS {
                tracing::warn!(call_sid = %self.info.call_sid, mark = %p.mark, "mark never echoed");
                let mark = p.mark.clone();
                self.on_mark(&mark, now, out);
            }
            return;
        }
        if let Some(u) = &self.unfinished {
            let quiet = self.caller_quiet();
            if quiet && now >= u.deadline {
                let turn = self.unfinished.take().expect("checked above");
                self.decision(now, DecisionKind::Waited, "the caller said no more", out);
                self.decide_turn(turn, false, now, out);
            }
            return;
        }
        if let Some(held) = self.held {
            let quiet = self.caller_quiet();
            if (quiet && now >= held.deadline) || now >= held.since + MAX_HOLD_MS {
                self.held = None;
                self.transfer_or_read_back(held.reason, held.priority, now, out);
            }
            return;
        }
        if let Some(c) = &self.confirming {
            let quiet = self.caller_quiet();
            if quiet && now >= self.last_activity + READBACK_REPLY_MS {
                let c = c.clone();
                self.confirming = None;
                self.decision(
                    now,
                    DecisionKind::ReadbackUnanswered,
                    "no reply to the read-back",
                    out,
                );
                self.mark_unconfirmed(c.field, "no reply when it was read back");
                self.transfer(c.reason, c.priority, now, out);
            }
            return;
        }
        if self.in_speech || !self.pending.is_empty() || self.goodbye_mark.is_some() {
            return;
        }
        if now < self.last_activity + self.book.dialplan.escalation.silence_reprompt_ms {
            return;
        }
        self.silence_prompts += 1;
        let esc = &self.book.dialplan.escalation;
        if self.silence_prompts == 1 && self.counters.no_progress < esc.no_progress_limit {
            self.decision(now, DecisionKind::Silence, "no answer from the caller", out);
            self.counters.no_progress += 1;
            self.tried
                .push("asked whether the caller was still there".into());
            self.play("still_there", now, out);
        } else {
            self.decision(
                now,
                DecisionKind::Silence,
                "no answer after a reprompt",
                out,
            );
            self.transfer(Reason::NotUnderstood, Priority::Normal, now, out);
        }
    }

    fn handle_arrived(&mut self, now: Millis, out: &mut Vec<Action>) {
        while let Some((&id, _)) = self.pending.first_key_value() {
            let Some(result) = self.arrived.remove(&id) else {
                break;
            };
            let result = match self.number_first.remove(&id) {
                // The number pass is back: the last of this utterance's passes.
                Some((first, mode)) => self.after_number_pass(first, mode, result, now, out),
                None => {
                    let Some(result) = self.tail_pass(id, result, out) else {
                        // Its continuation is being heard on its own; the turn waits for that.
                        break;
                    };
                    let Some(result) = self.second_pass(id, result, now, out) else {
                        // Heard again; the turn waits for that.
                        break;
                    };
                    let Some(result) = self.number_pass(id, result, out) else {
                        // A number heard again; the turn waits for that.
                        break;
                    };
                    result
                }
            };
            self.number_audio.remove(&id);
            let p = self.pending.remove(&id).unwrap_or_default();
            self.on_turn(
                result,
                Some(p.prosody),
                p.detected,
                p.speech_ended,
                now,
                out,
            );
            if self.done {
                return;
            }
        }
    }

    /// A held utterance whose transcript ends where it was held ("My account number is 447.")
    /// lost what came after the long pause: Whisper often stops at such a silence. The audio
    /// after the hold is transcribed on its own and the two are joined ("447." + "19." → one
    /// number). `None` while that runs.
    fn tail_pass(
        &mut self,
        id: u64,
        result: Result<Transcript, SttFailure>,
        out: &mut Vec<Action>,
    ) -> Option<Result<Transcript, SttFailure>> {
        if let Some((first, before)) = self.tail_pass.remove(&id) {
            return Some(Ok(match result {
                Ok(tail) if let Some(text) = join_tail(&first.text, &tail.text, &before) => {
                    // Weighed by words, as parts of a turn are: a short tail is never sure.
                    let n = |t: &Transcript| {
                        crate::analysis::text::words(&clean_transcript(&t.text))
                            .len()
                            .max(1) as f32
                    };
                    let (a, b) = (n(&first), n(&tail));
                    Transcript {
                        text,
                        confidence: (first.confidence * a + tail.confidence * b) / (a + b),
                    }
                }
                // Nothing new, or a failed tail pass: the first transcript stands.
                _ => first,
            }));
        }
        let p = self.pending.get(&id).cloned()?;
        let (Ok(t), Some(held)) = (&result, p.held_at) else {
            return Some(result);
        };
        // From just after the held words (the pause is at least 220 ms: the continuation
        // starts later than this) to the end of the utterance.
        let Some(samples) = self
            .frontend
            .audio_between(held.end_ms + TAIL_SKIP_MS, p.end_ms)
        else {
            return Some(result);
        };
        self.tail_pass.insert(id, (t.clone(), held.before));
        out.push(Action::Transcribe {
            utterance: id,
            samples,
            initial_prompt: self.book.stt_prompt.clone(),
            mode: SttMode::Free,
            speech_ended: p.speech_ended,
            early: false,
        });
        None
    }

    /// Short utterances that meant nothing on the first pass are heard once more with the
    /// escape-word vocabulary as Whisper's prompt; only an escape word from that pass is taken.
    /// `None` while the second pass runs.
    fn second_pass(
        &mut self,
        id: u64,
        result: Result<Transcript, SttFailure>,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Option<Result<Transcript, SttFailure>> {
        if let Some(again) = self.first_pass.remove(&id) {
            let heard = match result {
                Ok(t) if is_lone_escape_word(&t, again.pass) => t,
                // The prompted pass heard nothing: under `Both`, the constrained one tries.
                Ok(_) if again.pass == ShortPass::Both => {
                    let Some((samples, speech_ended)) = again.audio else {
                        return Some(Ok(again.first));
                    };
                    out.push(self.hear_again(id, samples, speech_ended, ShortPass::Constrained));
                    self.first_pass.insert(
                        id,
                        Rehearing {
                            pass: ShortPass::Constrained,
                            audio: None,
                            ..again
                        },
                    );
                    return None;
                }
                // A failed second pass costs the caller nothing: the first one stands.
                _ => return Some(Ok(again.first)),
            };
            self.decision(
                now,
                DecisionKind::SecondPass,
                &format!("heard {:?}, then {:?}", again.first.text, heard.text),
                out,
            );
            return Some(Ok(heard));
        }
        let audio = self.short_audio.remove(&id);
        let Ok(t) = &result else {
            return Some(result);
        };
        let Some((samples, speech_ended)) = audio else {
            return Some(result);
        };
        if !self.worth_a_second_pass(t) {
            return Some(result);
        }
        let pass = self.book.short_pass;
        let keep = (pass == ShortPass::Both).then(|| (samples.clone(), speech_ended));
        out.push(self.hear_again(id, samples, speech_ended, pass));
        self.first_pass.insert(
            id,
            Rehearing {
                first: t.clone(),
                pass,
                audio: keep,
            },
        );
        None
    }

    /// The second-pass transcription of a short utterance.
    fn hear_again(
        &self,
        id: u64,
        samples: Vec<f32>,
        speech_ended: Millis,
        pass: ShortPass,
    ) -> Action {
        // The constrained pass goes without the escape-word prompt: the grammar already keeps
        // it to those words, and the prompt would raise the score of a forced "Urgent." →
        // "Agent." (0.78 prompted against 0.34 plain) as much as that of a real one.
        let (initial_prompt, mode) = match pass {
            ShortPass::Prompted | ShortPass::Both => (SHORT_PASS_PROMPT.into(), SttMode::Free),
            ShortPass::Constrained => (self.book.stt_prompt.clone(), SttMode::EscapeWord),
        };
        Action::Transcribe {
            utterance: id,
            samples,
            initial_prompt,
            mode,
            speech_ended,
            early: false,
        }
    }

    /// An utterance whose transcript shows the caller giving a number ([`gives_a_number`]) is
    /// transcribed again, whole, as [`Playbook::number_pass`] says (by default greedily with a
    /// prompt of digits read out, [`SttMode::Numbers`]): tiny.en's plain decode writes digits
    /// read out as near misses ("3/8 to fix one", "free", "for") or drops them, and the card
    /// needs every digit. Runs after the continuation and second passes, so
    /// it judges the utterance by the most complete transcript there is. `None` while it runs.
    ///
    /// A caller asking for a person is put through at once instead: the latency of the way
    /// out matters more than the digits, which the agent can ask for.
    fn number_pass(
        &mut self,
        id: u64,
        result: Result<Transcript, SttFailure>,
        out: &mut Vec<Action>,
    ) -> Option<Result<Transcript, SttFailure>> {
        let Ok(t) = &result else {
            return Some(result);
        };
        let Some(mode) = self.book.number_pass.mode() else {
            return Some(result);
        };
        let text = clean_transcript(&t.text);
        if !gives_a_number(&text) || agent_request::detect(&text).count > 0 {
            return Some(result);
        }
        let Some((samples, speech_ended)) = self.number_audio.remove(&id) else {
            return Some(result);
        };
        self.number_first.insert(id, (t.clone(), mode));
        out.push(Action::Transcribe {
            utterance: id,
            samples,
            initial_prompt: self.book.stt_prompt.clone(),
            mode,
            speech_ended,
            early: false,
        });
        None
    }

    /// The number pass's transcript, unless it says less of the number than the first one
    /// did (a held utterance's second hearing can stop at the long pause as the first pass
    /// did, and a first transcript joined with its continuation then has digits it lacks),
    /// loops, or copies the prompt's own numbers. A failed, shed or empty number pass costs
    /// the caller nothing: the first transcript stands.
    fn after_number_pass(
        &mut self,
        first: Transcript,
        mode: SttMode,
        result: Result<Transcript, SttFailure>,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Result<Transcript, SttFailure> {
        let again = match result {
            Ok(c) => c,
            Err(e) => {
                let why = match e {
                    // Shed under load by design: a number pass runs only on a spare state.
                    SttFailure::Overloaded => "no spare decoder state".to_string(),
                    SttFailure::Failed(why) => format!("failed: {why}"),
                };
                let detail = format!("number pass {why}: kept {:?}", first.text);
                self.decision(now, DecisionKind::NumberPass, &detail, out);
                return Ok(first);
            }
        };
        let text = clean_transcript(&again.text);
        let digits = numbers::spoken_digits(&text);
        let first_digits = numbers::spoken_digits(&clean_transcript(&first.text));
        // Primed with a number, Whisper can write the primer's instead of an unclear one.
        let echoes_prompt = mode == SttMode::Numbers && {
            let primer = numbers::extract(NUMBER_PASS_PROMPT);
            [primer.account_number, primer.order_number]
                .iter()
                .flatten()
                .any(|d| digits.contains(d.as_str()) && !first_digits.contains(d.as_str()))
        };
        let take = !text.is_empty()
            && !looping(&text)
            && digits.len() >= first_digits.len()
            && !echoes_prompt;
        let detail = format!(
            "heard {:?}, again {:?}: {}",
            first.text,
            again.text,
            if take {
                "took the second hearing"
            } else {
                "kept the first"
            }
        );
        self.decision(now, DecisionKind::NumberPass, &detail, out);
        Ok(if take { again } else { first })
    }

    /// A first pass that heard words but nothing warmline understands, without confidence.
    fn worth_a_second_pass(&self, t: &Transcript) -> bool {
        let text = clean_transcript(&t.text);
        // An empty first pass is noise more often than speech, and a prompted Whisper fills
        // noise with its prompt: that would put callers through for a cough.
        if text.is_empty() || t.confidence >= SHORT_PASS_BELOW_CONFIDENCE {
            return false;
        }
        if language::detect(&t.text).is_some() {
            return false;
        }
        let request = agent_request::detect(&text);
        let plan = &self.book.dialplan;
        request.count == 0
            && !request.declined
            && intent::classify(&text, &self.book.intents).is_none()
            && intent::classify(&text, &self.book.answers).is_none()
            && !intent::matches_any(&text, &plan.goodbye_phrases)
    }

    fn on_turn(
        &mut self,
        result: Result<Transcript, SttFailure>,
        prosody: Option<Prosody>,
        detected: Millis,
        speech_ended: Millis,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let t = match result {
            Ok(t) => t,
            Err(failure) => {
                // Fail open: a caller we cannot transcribe goes to someone who can listen.
                let (why, reason) = match failure {
                    SttFailure::Overloaded => (
                        "speech recognition is at capacity".to_string(),
                        Reason::Overload,
                    ),
                    SttFailure::Failed(e) => (
                        format!("speech recognition failed: {e}"),
                        Reason::SystemFault,
                    ),
                };
                self.decision(now, DecisionKind::SttFailure, &why, out);
                self.tried.push(why);
                self.transfer(reason, Priority::Normal, now, out);
                return;
            }
        };
        let text = clean_transcript(&t.text);
        let foreign = language::detect(&t.text);
        // Whisper's "(speaking in foreign language)" leaves no words; the record still says
        // the caller spoke.
        let line = match foreign {
            Some(Foreign::Annotated) if text.is_empty() => FOREIGN_SPEECH_LINE.to_string(),
            _ => text.clone(),
        };
        if !line.is_empty() {
            self.line(now, Speaker::Caller, line, Some(t.confidence), prosody, out);
        }
        let part = Unfinished {
            words: crate::analysis::text::words(&text).len(),
            text,
            confidence: t.confidence,
            prosody,
            detected,
            deadline: speech_ended + self.book.dialplan.turns.hold_ms,
            parts: 1,
        };
        let Some(turn) = self.assemble(part, foreign.is_some(), now, out) else {
            return;
        };
        self.decide_turn(turn, foreign.is_some(), now, out);
    }

    /// Joins this part of a turn to the unfinished part before it, if any, and returns the
    /// turn to act on — or `None` while the caller seems to be mid-thought.
    fn assemble(
        &mut self,
        part: Unfinished,
        foreign: bool,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Option<Unfinished> {
        let turn = match self.unfinished.take() {
            // Noise while waiting: still waiting, the clock unchanged.
            Some(before) if part.text.is_empty() && !foreign => {
                self.unfinished = Some(before);
                return None;
            }
            Some(before) => {
                let words = before.words + part.words;
                let weight = |w: usize| w.max(1) as f32;
                Unfinished {
                    text: format!("{} {}", before.text, part.text),
                    confidence: (before.confidence * weight(before.words)
                        + part.confidence * weight(part.words))
                        / (weight(before.words) + weight(part.words)),
                    words,
                    prosody: part.prosody.or(before.prosody),
                    parts: before.parts + 1,
                    ..part
                }
            }
            None => part,
        };
        let semantic = self.book.dialplan.turns.semantic;
        if !semantic
            || foreign
            || turn.text.is_empty()
            || turn.parts >= MAX_UNFINISHED_PARTS
            || self.goodbye_mark.is_some()
        {
            return Some(turn);
        }
        let heard = self.heard(&turn.text, turn.confidence);
        match turn_end::judge(&turn.text, heard, &self.book.dialplan.turns) {
            TurnEnd::Unfinished(why) => {
                self.decision(
                    now,
                    DecisionKind::Wait,
                    &format!("{}: waiting for the rest", why.as_str()),
                    out,
                );
                self.unfinished = Some(turn);
                None
            }
            _ => Some(turn),
        }
    }

    /// What the dialplan makes of `text`, for judging whether the turn is over.
    fn heard(&self, text: &str, confidence: f32) -> Heard {
        let topic = intent::classify(text, &self.book.intents).map_or(0.0, |m| m.score);
        Heard {
            confidence,
            min_confidence: self.book.dialplan.escalation.min_confidence,
            answer: intent::classify(text, &self.book.answers).is_some_and(|m| m.score > topic),
            topic: topic > 0.0,
            goodbye: intent::matches_any(text, &self.book.dialplan.goodbye_phrases),
        }
    }

    /// Reads the transcript of the caller's latest pause: does it decide the turn?
    fn judge_pause(&mut self, now: Millis, out: &mut Vec<Action>) {
        if !self.book.dialplan.turns.semantic || self.goodbye_mark.is_some() {
            return;
        }
        let Some(Early {
            result: Some(Ok(t)),
            ..
        }) = &self.early
        else {
            return;
        };
        let text = clean_transcript(&t.text);
        if text.is_empty() || language::detect(&t.text).is_some() {
            return;
        }
        let before = text.clone();
        let joined = match &self.unfinished {
            Some(u) => format!("{} {text}", u.text),
            None => text,
        };
        let heard = self.heard(&joined, t.confidence);
        let turns = self.book.dialplan.turns;
        match turn_end::judge(&joined, heard, &turns) {
            TurnEnd::ActNow(why) => {
                if let Some(e) = self.early.as_mut() {
                    e.act_now = Some(why);
                }
                self.decision(
                    now,
                    DecisionKind::TurnDecided,
                    &format!("{} at a pause: acting without the endpoint", why.as_str()),
                    out,
                );
            }
            TurnEnd::Unfinished(why) => {
                // Keep the utterance open, so the rest reaches Whisper with what came before
                // it: a digit string heard whole is heard far better than digit by digit.
                let (start_ms, end_ms) = self
                    .early
                    .as_ref()
                    .map_or((0, 0), |e| (e.start_ms, e.end_ms));
                if self.frontend.hold_pause(end_ms, turns.hold_ms) {
                    // The first hold in an utterance is where what Whisper may drop begins.
                    let earlier = self
                        .hold_mark
                        .as_ref()
                        .is_some_and(|m| (start_ms..end_ms).contains(&m.end_ms));
                    if !earlier {
                        self.hold_mark = Some(HoldMark { end_ms, before });
                    }
                    self.decision(
                        now,
                        DecisionKind::HoldPause,
                        &format!("{}: holding the pause open", why.as_str()),
                        out,
                    );
                }
            }
            TurnEnd::Finished => {}
        }
    }

    /// The quick look at a short utterance is in: is it an unmistakable request for a
    /// person? If not, it is dropped and the pause transcript it held back goes ahead.
    fn judge_quick_look(&mut self, now: Millis, out: &mut Vec<Action>) {
        let request = self.quick.as_ref().and_then(|q| match &q.result {
            Some(Ok(t)) => Some(t),
            // A look refused for want of a free decoder, or one that failed, decides nothing.
            _ => None,
        });
        let request = request.is_some_and(|t| {
            let text = clean_transcript(&t.text);
            if text.is_empty() || language::detect(&t.text).is_some() {
                return false;
            }
            let joined = match &self.unfinished {
                Some(u) => format!("{} {text}", u.text),
                None => text,
            };
            let heard = self.heard(&joined, t.confidence);
            turn_end::judge(&joined, heard, &self.book.dialplan.turns)
                == TurnEnd::ActNow(turn_end::Why::RequestForPerson)
        });
        match self.quick.as_mut() {
            Some(q) if request && self.goodbye_mark.is_none() => {
                q.act_now = Some(turn_end::Why::RequestForPerson);
                self.act_on_quick_look(now, out);
            }
            _ => self.drop_quick_look(out),
        }
    }

    /// Drops a quick look at speech that did not end at `end_ms`, and the pause transcript
    /// it held back: the caller has spoken since.
    fn forget_stale_look(&mut self, end_ms: u64) {
        if self.quick.as_ref().is_some_and(|q| q.end_ms != end_ms) {
            self.quick = None;
            if self.deferred_pause.take().is_some() {
                self.early = None;
            }
        }
    }

    /// The caller went on after a quick look: it is of speech they have gone on from, so
    /// it stops taking a decoder state from the transcription that will matter.
    fn call_off_look(&mut self, out: &mut Vec<Action>) {
        let Some(q) = self.quick.take() else { return };
        if q.result.is_none() {
            out.push(Action::CancelTranscription { utterance: q.id });
        }
        if self.deferred_pause.take().is_some() {
            self.early = None;
        }
    }

    fn drop_quick_look(&mut self, out: &mut Vec<Action>) {
        self.quick = None;
        out.extend(self.deferred_pause.take());
    }

    /// A request for a person seen at the quick look ends the turn once the caller has been
    /// silent for [`QUICK_ACT_MS`] since, with that transcript; one who started again since
    /// was not finished, and their turn goes on as if the look had never been taken.
    fn act_on_quick_look(&mut self, now: Millis, out: &mut Vec<Action>) {
        let Some(end_ms) = self.due_to_act(self.quick.as_ref(), QUICK_ACT_MS) else {
            return;
        };
        let Some(u) = self.frontend.end_turn_at_pause(end_ms) else {
            self.drop_quick_look(out);
            return;
        };
        let Some(Early {
            id,
            result: Some(Ok(t)),
            ..
        }) = self.quick.take()
        else {
            return;
        };
        self.decision(
            now,
            DecisionKind::TurnDecided,
            "a request for a person at a short utterance's first pause: acting without the endpoint",
            out,
        );
        // The pause transcript of the same audio, if it started, is no longer wanted.
        self.early = None;
        self.deferred_pause = None;
        self.in_speech = false;
        self.last_activity = now;
        self.pending.insert(
            id,
            Pending {
                end_ms: u.end_ms,
                held_at: None,
                prosody: u.prosody,
                detected: now,
                speech_ended: speech_ended(&u, now),
            },
        );
        self.arrived.insert(id, Ok(t));
        self.handle_arrived(now, out);
    }

    /// Where the speech a look decided the turn at ended, once the caller has been silent for
    /// `ms` since: the frames heard so far say so, not the clock.
    fn due_to_act(&self, look: Option<&Early>, ms: Millis) -> Option<u64> {
        let look = look.filter(|e| e.act_now.is_some())?;
        let heard_until = self.frontend.frames_seen() * crate::audio::FRAME_MS;
        (heard_until >= look.end_ms + ms).then_some(look.end_ms)
    }

    /// The turn was decided at this pause and the caller has stayed silent for
    /// [`ACT_AT_PAUSE_MS`]: end the utterance here instead of waiting out the endpoint.
    fn act_at_pause(&mut self, now: Millis, out: &mut Vec<Action>) {
        let Some(end_ms) = self.due_to_act(self.early.as_ref(), ACT_AT_PAUSE_MS) else {
            return;
        };
        // The caller may have started again since the pause: then it is not the end.
        let Some(u) = self.frontend.end_turn_at_pause(end_ms) else {
            return;
        };
        self.in_speech = false;
        self.last_activity = now;
        self.on_utterance(u, now, out);
        self.handle_arrived(now, out);
    }

    /// Acts on a whole turn.
    fn decide_turn(&mut self, turn: Unfinished, foreign: bool, now: Millis, out: &mut Vec<Action>) {
        let Unfinished {
            text,
            confidence,
            prosody,
            detected,
            ..
        } = turn;
        if let Some(c) = self.confirming.take() {
            self.on_readback_reply(c, &text, confidence, now, out);
            return;
        }
        let mut signals = self.signals(&text, confidence, prosody.as_ref());
        signals.foreign_language = foreign;
        self.counters.stalled_ms = now.saturating_sub(self.progress_at);
        let decision = policy::decide(&self.book.dialplan.escalation, &self.counters, &signals);
        self.absorb(&signals, &decision, &text, now);
        self.decision(now, decision.kind(), &text, out);
        self.silence_prompts = 0;
        if self.goodbye_mark.is_some() && !matches!(decision, Decision::Transfer { .. }) {
            // Said over the goodbye and not a reason to stay: the call ends as agreed.
            if self.goodbye_played && !self.caller_still_talking() {
                self.hang_up(now, out);
            }
            return;
        }
        let upset = self.upset();
        if let Some(held) = self.held.take() {
            // The caller went on talking: their facts are merged. Something urgent acts now;
            // otherwise the routine transfer waits until they pause again.
            match decision {
                // Only a reason that outranks the routine transfer already decided replaces
                // it: a mumbled second sentence does not make the caller "not understood".
                Decision::Transfer { reason, priority }
                    if !matches!(
                        reason,
                        Reason::Dialplan | Reason::NotUnderstood | Reason::LowConfidence
                    ) =>
                {
                    self.transfer(reason, priority, now, out)
                }
                other => {
                    let priority = match other {
                        Decision::Transfer { priority, .. } => held.priority.max(priority),
                        _ => held.priority,
                    };
                    self.held = Some(Held {
                        priority,
                        deadline: detected + CONTINUATION_MS,
                        ..held
                    });
                    self.on_tick(now, out);
                }
            }
            return;
        }
        match decision {
            Decision::Transfer {
                reason: Reason::Dialplan,
                priority,
            } if !self.has_id_fact() => {
                self.decision(
                    now,
                    DecisionKind::Hold,
                    "waiting briefly in case the caller goes on",
                    out,
                );
                self.held = Some(Held {
                    reason: Reason::Dialplan,
                    priority,
                    deadline: detected + CONTINUATION_MS,
                    since: now,
                });
                self.on_tick(now, out);
            }
            Decision::Transfer { reason, priority } => {
                self.transfer_or_read_back(reason, priority, now, out)
            }
            Decision::Answer { answer, prompt } => {
                self.tried.push(format!("answered the {answer} question"));
                let id = self.variant(&prompt, upset);
                self.play(&id, now, out);
                self.last_answer = Some(answer);
            }
            Decision::Goodbye => {
                let id = self.book.dialplan.goodbye_prompt.clone();
                self.play(&id, now, out);
                self.goodbye_mark = self.playing.as_ref().map(|p| p.mark.clone());
                if self.goodbye_mark.is_none() {
                    self.hang_up(now, out);
                }
            }
            Decision::Clarify => {
                self.tried.push("asked one clarifying question".into());
                let id = self.variant("clarify", upset);
                self.play(&id, now, out);
            }
            Decision::RepeatPlease => {
                self.tried
                    .push("asked the caller to say it again (unclear line)".into());
                self.play("repeat_unclear", now, out)
            }
            Decision::Ignore => {
                if let Some(prompt) = self.interrupted.take() {
                    self.play(&prompt, now, out);
                }
            }
        }
    }

    fn signals(&mut self, text: &str, confidence: f32, prosody: Option<&Prosody>) -> TurnSignals {
        if text.is_empty() {
            return TurnSignals {
                empty: true,
                ..Default::default()
            };
        }
        let request = agent_request::detect(text);
        let answered = self.last_answer.take();
        let rejects_answer = answered.is_some() && feedback::rejects_answer(text);
        if let (true, Some(answer)) = (rejects_answer, &answered) {
            self.tried.push(format!(
                "the caller said the {answer} answer was not what they asked"
            ));
        }
        // "Anything else?" "No." is the caller saying they are done.
        let done_after_answer = answered.is_some() && feedback::plain_no(text);
        let lexical = sentiment::lexical(text);
        let turn_tone = self.tone.observe(&lexical, prosody);
        let first = self
            .tone
            .history()
            .first()
            .copied()
            .unwrap_or(turn_tone.score);
        let answer = intent::classify(text, &self.book.answers)
            .and_then(|m| {
                let a = self
                    .book
                    .dialplan
                    .answers
                    .iter()
                    .find(|a| a.name == m.name)?;
                Some((a.name.clone(), a.prompt.clone(), m.score))
            })
            .or_else(|| {
                let said = crate::analysis::text::words(text).join(" ");
                let a = self.book.dialplan.answers.iter().find(|a| {
                    a.alone
                        .iter()
                        .any(|p| crate::analysis::text::words(p).join(" ") == said)
                })?;
                Some((a.name.clone(), a.prompt.clone(), 1.0))
            });
        TurnSignals {
            agent_requests: if request.declined { 0 } else { request.count },
            strong_negative: lexical.strong_negative,
            repeat_contact: lexical.repeat_contact,
            tone_score: turn_tone.score,
            trend: Some(self.tone.trend()),
            tone_drop: first - turn_tone.score,
            intent: intent::classify(text, &self.book.intents)
                .map(|m| (m.name.to_string(), m.score)),
            answer,
            goodbye: done_after_answer
                || intent::matches_any(text, &self.book.dialplan.goodbye_phrases),
            confidence,
            empty: false,
            foreign_language: false,
            words: crate::analysis::text::words(text).len(),
            lone_request: agent_request::is_lone_request(text),
            rejects_answer,
        }
    }

    /// Folds one turn into what the call has seen.
    fn absorb(&mut self, s: &TurnSignals, decision: &Decision, text: &str, now: Millis) {
        if s.empty {
            return;
        }
        if s.rejects_answer {
            self.progress_at = self.progress_before_answer;
        }
        self.counters.agent_requests += s.agent_requests;
        self.counters.repeat_contact |= s.repeat_contact;
        let found = numbers::extract_after(text, self.open_field.take());
        self.open_field = numbers::open_field(text);
        if found.account_number.is_some() || found.order_number.is_some() {
            self.id_confidence = s.confidence;
        }
        self.facts.merge(&found);
        if let Some((name, _)) = &s.intent {
            self.intent = Some(name.clone());
            self.counters.known_intent = true;
            self.gist = Some(shorten(text, 16));
        } else if self.gist.is_none() && !matches!(decision, Decision::Goodbye) {
            self.gist = Some(shorten(text, 16));
        }
        match decision {
            Decision::Clarify => {
                self.counters.not_understood += 1;
                self.counters.no_progress += 1;
            }
            Decision::RepeatPlease => {
                self.counters.low_confidence += 1;
                self.counters.no_progress += 1;
            }
            Decision::Answer { .. } => {
                self.progress_before_answer = self.progress_at;
                self.progress_at = now;
            }
            _ => {}
        }
        if s.strong_negative || s.tone_score < 0.0 {
            self.gist = Some(shorten(text, 16));
        }
    }

    /// The caller is speaking, or something they said is still being transcribed.
    fn caller_still_talking(&self) -> bool {
        self.in_speech || !self.pending.is_empty()
    }

    /// Nothing heard is still to be decided, and the caller is not speaking — not even
    /// starting to: a wait that ran out in the first `min_speech_ms` of their next sentence
    /// would cut them off by a margin shorter than the time Whisper takes, so that a live
    /// call (whose transcript came in later) and its replay would part ways.
    fn caller_quiet(&self) -> bool {
        !self.caller_still_talking() && !self.frontend.speech_starting()
    }

    /// Whether the caller has been in automation too long without getting anywhere. A
    /// goodbye that is playing or a transfer that is waiting already ends the call.
    fn stalled(&self, now: Millis) -> bool {
        self.goodbye_mark.is_none()
            && self.held.is_none()
            && now >= self.progress_at + self.book.dialplan.escalation.no_progress_ms
    }

    fn has_id_fact(&self) -> bool {
        self.facts.account_number.is_some() || self.facts.order_number.is_some()
    }

    fn upset(&self) -> bool {
        matches!(
            self.tone.last_label(),
            Some(ToneLabel::Frustrated | ToneLabel::Angry)
        )
    }

    fn variant(&self, id: &str, upset: bool) -> String {
        self.book
            .prompts
            .variant(id, upset)
            .map_or_else(|| id.to_string(), |p| p.id.clone())
    }

    /// A routine transfer passes on an id the line is not sure of only after reading it back.
    fn transfer_or_read_back(
        &mut self,
        reason: Reason,
        priority: Priority,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let doubt = readback::doubtful(
            &self.facts,
            self.id_confidence,
            self.book.dialplan.turns.id_digits_min,
        );
        let speech = self.book.speech.clone();
        let (Some((field, number)), Some(speech), Reason::Dialplan, false) =
            (doubt, speech, reason, self.read_back)
        else {
            return self.transfer(reason, priority, now, out);
        };
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let Ok(audio) = speech.readback(&digits) else {
            return self.transfer(reason, priority, now, out);
        };
        self.read_back = true;
        self.decision(
            now,
            DecisionKind::Readback,
            &format!(
                "not sure of the {} {number}: reading it back",
                field.label()
            ),
            out,
        );
        let spaced: Vec<String> = digits.chars().map(String::from).collect();
        let prompt = Prompt {
            id: "readback".into(),
            text: format!("I have {} — is that right?", spaced.join(" ")),
            ulaw: audio.to_ulaw().into(),
        };
        self.confirming = Some(Confirming {
            field,
            reason,
            priority,
            asked_again: false,
        });
        self.play_prompt(prompt, now, out);
    }

    /// The caller's answer to a read-back: whatever it is, at most one more question.
    fn on_readback_reply(
        &mut self,
        c: Confirming,
        text: &str,
        confidence: f32,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let reply = readback::reply(text, c.field);
        self.decision(now, DecisionKind::ReadbackReply, &format!("{reply:?}"), out);
        match reply {
            Reply::Yes if !c.asked_again => {
                self.tried.push(format!(
                    "read the {} back; the caller confirmed it",
                    c.field.label()
                ));
            }
            Reply::Number(n) => {
                self.set_id(c.field, n);
                self.id_confidence = confidence;
                self.mark_unconfirmed(c.field, "corrected by the caller, not read back again");
            }
            Reply::No if !c.asked_again => {
                let again = self.book.speech.as_ref().map(|s| s.ask_again());
                if let Some(audio) = again {
                    self.confirming = Some(Confirming {
                        asked_again: true,
                        ..c
                    });
                    let prompt = Prompt {
                        id: "readback_again".into(),
                        text: "Sorry — please say the number again.".into(),
                        ulaw: audio.to_ulaw().into(),
                    };
                    return self.play_prompt(prompt, now, out);
                }
                self.mark_unconfirmed(c.field, "the caller said it was wrong");
            }
            _ => self.mark_unconfirmed(c.field, "not confirmed when read back"),
        }
        self.transfer(c.reason, c.priority, now, out);
    }

    fn set_id(&mut self, field: Field, number: String) {
        match field {
            Field::Account => self.facts.account_number = Some(number),
            Field::Order => self.facts.order_number = Some(number),
        }
    }

    fn mark_unconfirmed(&mut self, field: Field, why: &str) {
        if !self.unconfirmed.iter().any(|f| f == field.name()) {
            self.unconfirmed.push(field.name().to_string());
        }
        self.tried.push(format!(
            "read the {} back and it is unconfirmed ({why})",
            field.label()
        ));
    }

    fn play(&mut self, id: &str, now: Millis, out: &mut Vec<Action>) {
        let Some(prompt) = self.book.prompts.get(id).cloned() else {
            // A dialplan validated at load cannot get here; a missing prompt must still not
            // leave the caller in silence.
            self.decision(
                now,
                DecisionKind::Fault,
                &format!("prompt `{id}` missing"),
                out,
            );
            self.transfer(Reason::NotUnderstood, Priority::Normal, now, out);
            return;
        };
        self.play_prompt(prompt, now, out);
    }

    fn play_prompt(&mut self, prompt: Prompt, now: Millis, out: &mut Vec<Action>) {
        if self.playing.take().is_some() {
            out.push(Action::Clear);
        }
        self.interrupted = None;
        self.next_mark += 1;
        let mark = format!("{}-{}", prompt.id, self.next_mark);
        // Playing first, so the transcript line names the prompt it came from.
        self.playing = Some(Playing {
            mark: mark.clone(),
            prompt: prompt.id.clone(),
            started: now,
            duration: prompt.duration_ms(),
        });
        self.line(now, Speaker::System, prompt.text.clone(), None, None, out);
        out.push(Action::Play {
            prompt: prompt.id.clone(),
            text: prompt.text.clone(),
            audio: prompt.ulaw.clone(),
            mark,
        });
    }

    fn hang_up(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.decision(now, DecisionKind::Hangup, "goodbye played", out);
        self.done = true;
        out.push(Action::Hangup);
    }

    fn transfer(&mut self, reason: Reason, priority: Priority, now: Millis, out: &mut Vec<Action>) {
        let plan = &self.book.dialplan;
        let queue_name = self
            .intent
            .as_ref()
            .and_then(|i| plan.intents.iter().find(|x| &x.name == i))
            .map_or(plan.fallback_queue.as_str(), |i| i.queue.as_str());
        let Some(queue) = plan.queue(queue_name).or_else(|| plan.queues.first()) else {
            return;
        };
        let mood = self.tone.describe();
        let upset = self.upset() || matches!(reason, Reason::NegativeSentiment);
        let input = SummaryInput {
            queue: &queue.name,
            intent: self.intent.as_deref(),
            reason,
            priority,
            facts: &self.facts,
            mood: &mood,
            upset,
            agent_requests: self.counters.agent_requests,
            tried: &self.tried,
            gist: self.gist.as_deref(),
            repeat_contact: self.counters.repeat_contact,
        };
        let card = ContextCard {
            call_sid: self.info.call_sid.clone(),
            from: self.info.from.clone(),
            to: self.info.to.clone(),
            queue: queue.name.clone(),
            target: queue.target.as_str().to_string(),
            reason: reason.as_str().to_string(),
            priority,
            intent: self.intent.clone(),
            facts: self.facts.clone(),
            unconfirmed: self.unconfirmed.clone(),
            sentiment: SentimentSummary {
                score: self.tone.current(),
                trend: self.tone.trend().as_str().to_string(),
                label: self
                    .tone
                    .last_label()
                    .unwrap_or(ToneLabel::Calm)
                    .as_str()
                    .to_string(),
            },
            agent_requests: self.counters.agent_requests,
            summary: handoff::written_summary(&input),
            spoken_summary: handoff::spoken_summary(&input),
            transcript: self.transcript.clone(),
            started_at: self.info.started_at.to_rfc3339(),
            handoff_at: (self.info.started_at + Duration::milliseconds(now as i64)).to_rfc3339(),
        };
        let handoff = Handoff {
            id: self.info.handoff_id.clone(),
            caller_say: handoff::caller_line(&input),
            target: queue.target.clone(),
            card,
        };
        self.decision(
            now,
            DecisionKind::Transfer,
            &format!(
                "{} to {} ({})",
                reason.as_str(),
                queue.name,
                priority.as_str()
            ),
            out,
        );
        out.push(Action::Record(Record::Handoff {
            id: handoff.id.clone(),
            card: Box::new(handoff.card.clone()),
        }));
        if self.playing.take().is_some() {
            out.push(Action::Clear);
        }
        self.done = true;
        out.push(Action::Transfer(Box::new(handoff)));
    }

    fn line(
        &mut self,
        now: Millis,
        speaker: Speaker,
        text: String,
        confidence: Option<f32>,
        prosody: Option<Prosody>,
        out: &mut Vec<Action>,
    ) {
        let prompt = match speaker {
            Speaker::System => self.playing.as_ref().map(|p| p.prompt.clone()),
            Speaker::Caller => None,
        };
        let line = TranscriptLine {
            t_ms: now,
            speaker,
            text,
            confidence,
            prompt,
            prosody,
        };
        self.transcript.push(line.clone());
        out.push(Action::Record(Record::Line(line)));
    }

    fn decision(&self, now: Millis, decision: DecisionKind, detail: &str, out: &mut Vec<Action>) {
        tracing::info!(call_sid = %self.info.call_sid, t_ms = now, %decision, detail, "decision");
        out.push(Action::Record(Record::Decision {
            t_ms: now,
            decision,
            detail: detail.to_string(),
        }));
    }
}

/// Whisper marks non-speech as "[BLANK_AUDIO]", "(music)", "*cough*"; those are not words.
fn clean_transcript(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '[' | '(' | '*' if depth == 0 || c != '*' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            '*' => depth = 0,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let trimmed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.chars().any(|c| c.is_alphanumeric()) {
        trimmed
    } else {
        String::new()
    }
}

/// Whether a transcript shows the caller giving a number: a digit written as one ("447",
/// "3/8", "12.99"), two digit words ("four four seven"; one alone is too often just "one"),
/// or "number" followed by more than "is" (tiny.en's "account number is free for…", where
/// every digit was heard as a word). Over-asking costs a number pass; under-asking a
/// number that reaches the card wrong.
fn gives_a_number(text: &str) -> bool {
    let words = crate::analysis::text::words(text);
    let numeral = |w: &String| w.chars().any(|c| c.is_ascii_digit());
    // "oh" is a digit only inside a number; as a word it is an exclamation.
    let digit_word = |w: &String| w != "oh" && w != "o" && numbers::digit_word(w).is_some();
    if words.iter().any(numeral) || words.iter().filter(|w| digit_word(w)).count() >= 2 {
        return true;
    }
    const LINKS: &[&str] = &["is", "was", "it's", "its", "uh", "um", "er"];
    words.iter().enumerate().any(|(at, w)| {
        (w == "number" || w == "numbers")
            && words[at + 1..].iter().any(|w| !LINKS.contains(&w.as_str()))
    })
}

/// Whisper caught in a repetition loop ("3 3 3 3 3 …", "9033333333"): a transcript that says
/// nothing to be trusted.
fn looping(text: &str) -> bool {
    let words = crate::analysis::text::words(text);
    let repeated_word = words.windows(4).any(|w| w.iter().all(|x| *x == w[0]));
    let repeated_char = words.iter().any(|w| {
        w.as_bytes()
            .windows(5)
            .any(|r| r.iter().all(|c| c.is_ascii_digit() && *c == r[0]))
    });
    repeated_word || repeated_char
}

/// Joins the audio after a held pause, heard on its own (`tail`), to the transcript of the
/// whole utterance, given the pause's own transcript (`before`). Both heard the audio after the
/// hold: the whole in context, which is usually better, but Whisper often stops at a long
/// silence ("…is 447." and nothing of the "19" after it). So the tail's digits count only where
/// the whole has fewer after the hold: if the whole's run is where the tail's begins, the rest
/// is added ("447." + "4 4 7 1 9" → "447. 1 9"); if they differ, the tail, which heard more,
/// replaces what the whole heard after the hold ("723 843" against "7 2 0 3 8 4 3"). Adding
/// two hearings of the same digits would write the number twice. `None`: the whole stands.
fn join_tail(whole: &str, tail: &str, before: &str) -> Option<String> {
    let tail = clean_transcript(tail);
    if tail.is_empty() || looping(&tail) {
        return None;
    }
    let td = numbers::spoken_digits(&tail);
    if !td.is_empty() {
        let (wd, bd) = (
            numbers::spoken_digits(whole),
            numbers::spoken_digits(before),
        );
        // The whole's digits after the hold, assuming it heard as many before it as the
        // pause's transcript did.
        let after = wd.get(bd.len().min(wd.len())..).unwrap_or_default();
        if td.len() <= after.len() {
            return None;
        }
        if let Some(rest) = td.strip_prefix(after) {
            let spaced: Vec<String> = rest.chars().map(String::from).collect();
            return Some(format!("{} {}", whole.trim_end(), spaced.join(" ")));
        }
        return Some(format!("{} {tail}", clean_transcript(before)));
    }
    let (w, t) = (
        crate::analysis::text::words(whole),
        crate::analysis::text::words(&tail),
    );
    (!w.ends_with(&t)).then(|| format!("{} {}", whole.trim_end(), tail))
}

fn shorten(text: &str, words: usize) -> String {
    let w: Vec<&str> = text.split_whitespace().collect();
    if w.len() <= words {
        text.trim().trim_end_matches(['.', '!', '?']).to_string()
    } else {
        format!("{}…", w[..words].join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_speech_markers_are_dropped() {
        assert_eq!(clean_transcript(" [BLANK_AUDIO]"), "");
        assert_eq!(clean_transcript(" (music) "), "");
        assert_eq!(
            clean_transcript(" *cough* I need an agent."),
            "I need an agent."
        );
        assert_eq!(clean_transcript(" ..."), "");
        assert_eq!(clean_transcript(" Hello there"), "Hello there");
    }

    #[test]
    fn a_continuation_is_added_only_when_the_whole_lost_it() {
        let j = |whole, tail, before| join_tail(whole, tail, before);
        let held = "My account number is 447";
        assert_eq!(j("My account number is 447 19.", "19.", held), None);
        assert_eq!(j("My account number is 44719.", "one nine", held), None);
        assert_eq!(
            j("My account number is 447.", "One nine.", held).as_deref(),
            Some("My account number is 447. 1 9")
        );
        // Overlap: the continuation began before where the whole stopped.
        assert_eq!(
            j("is 6 2.", "2 9 0 3", "is 6").as_deref(),
            Some("is 6 2. 9 0 3")
        );
        assert_eq!(
            j(
                "Hello, what are your hours?",
                "What are your hours?",
                "Hello"
            ),
            None
        );
        assert_eq!(
            j("Hello.", "What are your hours?", "Hello").as_deref(),
            Some("Hello. What are your hours?")
        );
        assert_eq!(j("anything", " [BLANK_AUDIO]", "anything"), None);
        // A loop is no continuation.
        assert_eq!(j("62903.", "9 0 3 3 3 3 3 3", "6 2"), None);
        assert_eq!(j("62903.", "90333333333333", "6 2"), None);
    }

    /// The whole and the tail both heard the digits after the hold (digit-recall clips, where
    /// adding them wrote the number twice on the card): the one that heard more is taken.
    #[test]
    fn two_hearings_of_the_same_digits_are_not_added_together() {
        let held = "The account number is";
        assert_eq!(
            join_tail("The account number is 7894 4760.", "7 8 9 4 4 7 6", held),
            None
        );
        assert_eq!(
            join_tail(
                "My order number is two eight triple four double seven",
                "2 8 3 4 7",
                "My order number is"
            ),
            None
        );
        assert_eq!(
            join_tail(
                "The order number is 723 843.",
                "7 2 0 3 8 4 3.",
                "The order number is"
            )
            .as_deref(),
            Some("The order number is 7 2 0 3 8 4 3.")
        );
    }

    #[test]
    fn shorten_keeps_short_text_whole() {
        assert_eq!(
            shorten("My box arrived damaged.", 16),
            "My box arrived damaged"
        );
        assert_eq!(shorten("a b c d", 2), "a b…");
    }
}

//! The call driver: one task per call, the same for every provider.
//!
//! It reads [`Frame`]s from the connection's [`Link`], turns them into media events with the
//! provider's [`WireCodec`], feeds the sans-IO engine, and carries out its actions: paced
//! outbound audio, marks (the provider's own, or emulated from the playout clock), clears,
//! transcription jobs, transfers through the provider's [`Control`], and call records.
//! Nothing here names a provider.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument;

use super::AppState;
use super::admission;
use super::log_limit::LogLimit;
use super::records::Op;
use super::transport::{Incoming, Link, Outgoing as Out2};
use crate::audio::FRAME_SAMPLES_8K;
use crate::call::{
    Action, CallInfo, Engine, Event, Millis, Outcome, SttFailure, Transcript, TransferStatus,
};
use crate::config::Limits;
use crate::handoff::Handoff;
use crate::telephony::WireCodec;
use crate::telephony::control::{Control, Started};
use crate::telephony::media::{Frame, MediaEvent, Outgoing, StreamStart};

/// How long a stream may take to say which call it carries.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound audio is kept this far ahead of real time: enough to ride out scheduling jitter,
/// little enough that `clear` leaves almost nothing playing.
const LEAD_MS: u64 = 80;
/// A transcription waits this long for a free model state before the caller is handed over.
const STT_WAIT: Duration = Duration::from_millis(5_000);
/// A transcript started at a pause is called off when a caller who has finished speaking waits
/// for a decoder state, but only this early in its run: the endpoint comes at least ~180 ms
/// after the pause, so an older one is most likely the finished turn of its own caller, and
/// throwing it away would make them wait for all of it again.
const SPECULATIVE_YIELD: Duration = Duration::from_millis(150);
/// After a transfer is accepted the provider ends the stream; do not wait longer than this.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// A `chunk` this far past the last one is not a gap in the audio but a bogus number; the
/// frame is used and the number ignored, so one bad field cannot make the call deaf.
const MAX_CHUNK_JUMP: u64 = 50 * 60 * 60;
/// 20 ms of μ-law silence, for protocols that want audio all the time.
const SILENCE: [u8; FRAME_SAMPLES_8K] = [0xFF; FRAME_SAMPLES_8K];

/// What the driver needs to know about the provider of one call.
pub struct Session {
    pub codec: WireCodec,
    pub control: Control,
    pub admit: AdmitBy,
}

/// How a stream proves it belongs to a call warmline agreed to take.
pub enum AdmitBy {
    /// With the single-use token the signed webhook answer carried (see [`admission`]).
    Reservation,
    /// The connection itself is the proof (a PBX on a private network); a slot is taken
    /// on arrival, or refused at capacity.
    Direct,
}

/// Largest WebSocket message a media stream may send (a 20 ms frame is a few hundred bytes).
const MAX_MESSAGE: usize = 64 * 1024;

/// Accepts a media WebSocket and drives its call: the one entry for every WebSocket carrier.
pub fn websocket(
    state: Arc<AppState>,
    ws: axum::extract::ws::WebSocketUpgrade,
    session: Session,
) -> axum::response::Response {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let link = super::transport::websocket(
                socket,
                Limits::ms(state.settings.limits.send_ms),
                state.metrics.clone(),
            );
            run(state, link, session).await
        })
}

pub async fn run(state: Arc<AppState>, mut link: Link, mut session: Session) {
    let Some(start) = await_start(&state, &mut link, &mut session.codec).await else {
        let _ = link.tx.try_send(Out2::Close);
        return;
    };
    let span = tracing::info_span!("call", call_sid = %start.call_id);
    async move {
        let Some((slot, promised)) = admit(&state, &start, &session.admit) else {
            if let Some(f) = session.codec.encode(Outgoing::Hangup) {
                let _ = link.tx.try_send(Out2::Frame(f));
            }
            let _ = link.tx.try_send(Out2::Close);
            return;
        };
        let _active = state.metrics.track_active_call();
        let outcome = drive(&state, start, promised, link, session).await;
        state.metrics.inc_calls(outcome);
        drop(slot);
    }
    .instrument(span)
    .await
}

/// Takes the call's slot: the reservation its webhook made, claimed with the single-use
/// token, or a direct one.
fn admit(
    state: &AppState,
    start: &StreamStart,
    how: &AdmitBy,
) -> Option<(admission::Slot, admission::Promised)> {
    let now = std::time::Instant::now();
    let claimed = match how {
        AdmitBy::Reservation => {
            let given = start.token.as_deref().unwrap_or("");
            state.admission.claim(&start.call_id, given, now)
        }
        AdmitBy::Direct => state.admission.admit_direct(&start.call_id, now),
    };
    let (slot, promised) = match claimed {
        Ok(c) => c,
        Err(e) => {
            warn_limited(
                &STREAM_LOG,
                "stream refused before any audio",
                &e.to_string(),
            );
            state.metrics.inc_wire_errors(e.kind());
            return None;
        }
    };
    // A webhook that named its account binds the stream to it: the stream must name the same.
    if matches!(how, AdmitBy::Reservation)
        && !promised.account_sid.is_empty()
        && start.account != promised.account_sid
    {
        warn_limited(
            &STREAM_LOG,
            "stream refused before any audio",
            "the stream's account differs from the webhook's",
        );
        state.metrics.inc_wire_errors("wrong_account");
        return None;
    }
    Some((slot, promised))
}

static STREAM_LOG: LogLimit = LogLimit::new();
static WIRE_LOG: LogLimit = LogLimit::new();

/// A warning the network can trigger: at most one line a second, with the count held back.
fn warn_limited(limit: &LogLimit, what: &str, detail: &str) {
    if let Some(suppressed) = limit.permit() {
        tracing::warn!(detail, suppressed, "{what}");
    }
}

/// Reads until the stream says which call it is, counting anything malformed on the way; a
/// peer that sends more than `limits.bad_frames_before_start` of those is cut off (it has not
/// proven it is a call).
async fn await_start(
    state: &AppState,
    link: &mut Link,
    codec: &mut WireCodec,
) -> Option<StreamStart> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let allowed = state.settings.limits.bad_frames_before_start;
    let mut bad = 0u32;
    loop {
        if bad > allowed {
            warn_limited(
                &STREAM_LOG,
                "too many bad frames before the stream started: closing",
                "",
            );
            state.metrics.inc_wire_errors("too_many_bad_frames");
            return None;
        }
        let frame = match tokio::time::timeout_at(deadline, link.rx.recv()).await {
            Ok(Some(Incoming::Frame(f))) => f,
            Ok(Some(Incoming::Failed { kind, .. })) => {
                state.metrics.inc_wire_errors(kind);
                return None;
            }
            Ok(Some(Incoming::Closed) | None) => return None,
            Err(_) => {
                warn_limited(&STREAM_LOG, "no stream start in time: closing", "");
                state.metrics.inc_wire_errors("no_start");
                return None;
            }
        };
        match codec.decode(frame) {
            Ok(MediaEvent::Start(s)) => return Some(s),
            Ok(MediaEvent::Nothing) => {}
            Ok(other) => {
                bad += 1;
                warn_limited(
                    &WIRE_LOG,
                    "event before the stream started: ignored",
                    &format!("{other:?}").chars().take(60).collect::<String>(),
                );
                state.metrics.inc_wire_errors("before_start");
            }
            Err(e) => {
                bad += 1;
                warn_limited(
                    &WIRE_LOG,
                    "bad message before the stream started",
                    &e.detail,
                );
                state.metrics.inc_wire_errors(e.kind);
            }
        }
    }
}

/// Audio and marks waiting to go out, paced against the call clock.
#[derive(Default)]
struct Outbound {
    queue: VecDeque<Out>,
    /// Call-clock time at which everything sent so far will have finished playing.
    played_until: Millis,
}

enum Out {
    Frame(Vec<u8>),
    Mark(String),
}

/// How a call ended, for records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Live,
    /// A transfer request is in flight.
    Transferring,
    /// The provider accepted the transfer; waiting for `stop`.
    Transferred,
    /// The REST transfer failed; the stream is closed so `<Connect action>` dials instead.
    TransferFailed,
    SelfServed,
    CallerHungUp,
    Dropped,
}

impl Phase {
    fn outcome(self) -> Outcome {
        match self {
            Phase::Live | Phase::Dropped => Outcome::StreamDropped,
            Phase::Transferring | Phase::TransferFailed => Outcome::TransferFailed,
            Phase::Transferred => Outcome::Transferred,
            Phase::SelfServed => Outcome::SelfServed,
            Phase::CallerHungUp => Outcome::CallerHangup,
        }
    }
}

struct Driver {
    state: Arc<AppState>,
    engine: Engine,
    call_sid: String,
    codec: WireCodec,
    control: Control,
    /// To the connection's writer task; never awaited, so a peer that stops reading cannot
    /// stall the call (see [`Driver::send`]).
    outbox: mpsc::Sender<Out2>,
    started: Instant,
    out: Outbound,
    /// Marks the provider cannot echo, due when the audio before them has played.
    emulated_marks: VecDeque<(Millis, String)>,
    /// Early transcriptions still running, each with the flag that calls it off: the engine
    /// says when a caller went on speaking and made one moot.
    early_runs: HashMap<u64, Arc<AtomicBool>>,
    stt_tx: mpsc::UnboundedSender<(u64, Result<Transcript, SttFailure>)>,
    rest_tx: mpsc::UnboundedSender<Result<u32, String>>,
    phase: Phase,
    /// When the caller last stopped speaking (or pressed a key): decision latency starts here.
    last_trigger: Option<Millis>,
    last_chunk: Option<u64>,
    /// Caller audio received so far, in ms; kept within real time plus a burst.
    audio_ms: Millis,
    /// The provider said `stop` while the transfer request was in flight: end once it answers.
    stop_seen: bool,
    socket_open: bool,
    /// The writer gave up (peer not reading, or the connection failed): nothing more goes out.
    outbox_dead: bool,
    /// The server is draining: once a transfer is accepted the call ends without waiting
    /// for the provider's `stop`.
    draining: bool,
    close: bool,
    /// This call's recording, when recording is on.
    rec: Option<crate::recording::CallTap>,
}

async fn drive(
    state: &Arc<AppState>,
    start: StreamStart,
    promised: admission::Promised,
    link: Link,
    session: Session,
) -> Outcome {
    let Link {
        tx: outbox,
        rx: mut inbox,
    } = link;
    let info = CallInfo {
        call_sid: start.call_id.clone(),
        from: promised.from,
        to: promised.to,
        started_at: chrono::Utc::now(),
        handoff_id: super::fail_open::random_id(),
    };
    state.records.send(Op::Begin {
        call_sid: info.call_sid.clone(),
        from: info.from.clone(),
        to: info.to.clone(),
        started_at: info.started_at.to_rfc3339(),
    });
    let limits = &state.settings.limits;
    let engine = match Engine::new(info, state.book.clone()) {
        Ok(e) => e,
        Err(e) => {
            // Closing the stream makes the provider fall back (its after-stream callback, or
            // the PBX dialplan), which dials a person.
            tracing::error!(error = %e, "cannot start the call engine: failing open");
            let _ = outbox.try_send(Out2::Close);
            return Outcome::StreamDropped;
        }
    };
    let (stt_tx, mut stt_rx) = mpsc::unbounded_channel();
    let (rest_tx, mut rest_rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        state: state.clone(),
        engine,
        call_sid: start.call_id.clone(),
        codec: session.codec,
        control: session.control,
        outbox,
        started: Instant::now(),
        out: Outbound::default(),
        emulated_marks: VecDeque::new(),
        early_runs: HashMap::new(),
        stt_tx,
        rest_tx,
        phase: Phase::Live,
        last_trigger: None,
        last_chunk: None,
        audio_ms: 0,
        stop_seen: false,
        socket_open: true,
        outbox_dead: false,
        draining: false,
        close: false,
        rec: state
            .recorder
            .begin(&start.call_id, &state.book.dialplan.greeting),
    };
    tracing::info!(stream = %start.stream_id, "stream started");
    let actions = d.engine.start(0);
    d.apply(actions);
    if d.state.stt.get().is_none() || d.overloaded() {
        let now = d.now();
        let actions = d.engine.feed(Event::Overloaded, now);
        d.state.metrics.inc_overload_handoffs();
        d.apply(actions);
    }

    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let media_idle = Limits::ms(limits.media_idle_ms);
    let mut heard = tokio::time::Instant::now();
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    while !d.close {
        let stop_wait = async {
            match stop_deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = inbox.recv(), if d.socket_open => {
                heard = tokio::time::Instant::now();
                match incoming {
                    Some(Incoming::Frame(f)) => d.on_frame(f),
                    Some(Incoming::Closed) | None => d.on_socket_gone("connection closed"),
                    Some(Incoming::Failed { kind, detail }) => {
                        d.state.metrics.inc_wire_errors(kind);
                        d.on_socket_gone(&format!("connection error ({kind}): {detail}"));
                    }
                }
            },
            Some((utterance, result)) = stt_rx.recv() => {
                d.early_runs.remove(&utterance);
                let now = d.now();
                d.tap(|r| r.transcribed(utterance, &result, now));
                let actions = d.engine.feed(Event::Transcribed { utterance, result }, now);
                d.apply(actions);
            }
            Some(result) = rest_rx.recv() => d.on_rest_result(result),
            _ = tick.tick() => {
                d.pump();
                d.release_marks();
                let now = d.now();
                let actions = d.engine.feed(Event::Tick, now);
                d.apply(actions);
                if d.socket_open && d.phase == Phase::Live && heard.elapsed() >= media_idle {
                    d.state.metrics.inc_wire_errors("media_idle");
                    d.on_socket_gone(&format!("no media for {media_idle:?}"));
                }
            }
            Ok(_) = shutdown.wait_for(|s| *s), if !d.draining => {
                d.draining = true;
                if d.phase == Phase::Live {
                    d.fault("server shutting down");
                }
            }
            _ = stop_wait => {
                tracing::warn!("no `stop` after the transfer was accepted: closing");
                d.close = true;
            }
        }
        if d.phase == Phase::Transferred {
            if d.draining || d.outbox_dead {
                d.close = true;
            } else if stop_deadline.is_none() {
                stop_deadline = Some(tokio::time::Instant::now() + STOP_WAIT);
            }
        }
    }
    let outcome = d.phase.outcome();
    let now = d.now();
    d.tap(|r| r.end(outcome, now));
    d.state.records.send(Op::Finish {
        call_sid: d.call_sid.clone(),
        outcome,
        ended_at: chrono::Utc::now().to_rfc3339(),
    });
    let _ = d.outbox.try_send(Out2::Close);
    tracing::info!(%outcome, "call ended");
    outcome
}

impl Driver {
    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// Hands what the engine sees to this call's recording, if it is being recorded.
    fn tap(&mut self, f: impl FnOnce(&mut crate::recording::CallTap)) {
        if let Some(r) = self.rec.as_mut() {
            f(r);
        }
    }

    /// A caller whose first utterance would already wait longer than [`STT_WAIT`] goes to a
    /// person now rather than after telling their story to a line that cannot listen.
    fn overloaded(&self) -> bool {
        self.state.stt_load.saturated(STT_WAIT)
    }

    fn wire_error(&self, kind: &'static str, detail: &str) {
        warn_limited(&WIRE_LOG, kind, detail);
        self.state.metrics.inc_wire_errors(kind);
    }

    /// Whether this frame keeps the caller's audio within real time plus the allowed burst.
    /// Audio faster than that is dropped: a stream cannot queue more speech recognition than
    /// a person can speak, so it cannot starve other callers.
    fn within_pace(&mut self, bytes: usize) -> bool {
        let ms = (bytes / 8) as Millis;
        let allowed = self.now() + self.state.settings.limits.media_burst_ms;
        if self.audio_ms + ms > allowed {
            return false;
        }
        self.audio_ms += ms;
        true
    }

    /// Something inside failed mid-call: the engine hands the caller over (fail open).
    fn fault(&mut self, why: &str) {
        let now = self.now();
        let actions = self.engine.feed(Event::Fault(why.to_string()), now);
        self.apply(actions);
    }

    fn on_frame(&mut self, frame: Frame) {
        let event = match self.codec.decode(frame) {
            Ok(e) => e,
            Err(e) => return self.wire_error(e.kind, &e.detail),
        };
        let now = self.now();
        let actions = match event {
            MediaEvent::Audio { ulaw, chunk } => {
                match (chunk, self.last_chunk) {
                    (Some(c), Some(last)) if c <= last => {
                        return self.wire_error("out_of_order", &format!("chunk {c} after {last}"));
                    }
                    (Some(c), Some(last)) if c - last > MAX_CHUNK_JUMP => {
                        self.wire_error("chunk_jump", &format!("chunk {c} after {last}"));
                    }
                    (Some(c), None) if c > MAX_CHUNK_JUMP => {
                        self.wire_error("chunk_jump", &format!("first chunk {c}"));
                    }
                    (Some(c), _) => self.last_chunk = Some(c),
                    (None, _) => {}
                }
                if !self.within_pace(ulaw.len()) {
                    return self.wire_error("media_too_fast", "audio ahead of real time dropped");
                }
                self.tap(|r| r.audio(&ulaw, now));
                self.engine.feed(Event::Audio(&ulaw), now)
            }
            MediaEvent::Dtmf(digit) => {
                self.tap(|r| r.dtmf(digit, now));
                self.last_trigger = Some(now);
                self.engine.feed(Event::Dtmf(digit), now)
            }
            MediaEvent::Mark(name) => {
                self.tap(|r| r.mark(&name, now));
                self.engine.feed(Event::Mark(name), now)
            }
            MediaEvent::Stop => {
                tracing::info!("provider sent stop");
                match self.phase {
                    Phase::Live => {
                        self.phase = Phase::CallerHungUp;
                        let actions = self.engine.feed(Event::Hangup, now);
                        self.apply(actions);
                        self.close = true;
                    }
                    // The redirect usually stops the stream before the REST answer arrives;
                    // wait for it so the record says what really happened.
                    Phase::Transferring => self.stop_seen = true,
                    _ => self.close = true,
                }
                return;
            }
            MediaEvent::DuplicateStart | MediaEvent::Start(_) => {
                return self.wire_error("duplicate_start", "second stream start ignored");
            }
            MediaEvent::Nothing => return,
        };
        self.apply(actions);
    }

    /// The socket went away without `stop`: record a handoff so the provider's fallback (its
    /// after-stream callback, the PBX's route lookup) can dial a person with context, but do
    /// not call the REST API (the provider is already moving on).
    fn on_socket_gone(&mut self, why: &str) {
        self.socket_open = false;
        if self.phase == Phase::Transferring {
            // The transfer request is still in flight: its answer decides the outcome.
            self.stop_seen = true;
            return;
        }
        self.close = true;
        if self.phase != Phase::Live {
            return;
        }
        tracing::warn!(why, "stream dropped mid-call");
        self.phase = Phase::Dropped;
        let now = self.now();
        let actions = self.engine.feed(Event::Fault(why.to_string()), now);
        for a in actions {
            if let Action::Record(record) = a {
                self.state.records.send(Op::Record {
                    call_sid: self.call_sid.clone(),
                    record,
                });
            }
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        let now = self.now();
        self.tap(|r| r.actions(&actions, now));
        for action in actions {
            match action {
                Action::Record(record) => {
                    self.state.records.send(Op::Record {
                        call_sid: self.call_sid.clone(),
                        record,
                    });
                }
                Action::Play { audio, mark, .. } => {
                    for frame in audio.chunks(FRAME_SAMPLES_8K) {
                        self.out.queue.push_back(Out::Frame(frame.to_vec()));
                    }
                    self.out.queue.push_back(Out::Mark(mark));
                    self.pump();
                }
                Action::Clear => {
                    self.out.queue.clear();
                    self.out.played_until = self.now();
                    self.send(Outgoing::Clear);
                    // As a provider's own clear does, it gives back the marks it dropped.
                    for (_, name) in std::mem::take(&mut self.emulated_marks) {
                        let now = self.now();
                        let actions = self.engine.feed(Event::Mark(name), now);
                        self.apply(actions);
                    }
                }
                Action::Transcribe {
                    utterance,
                    samples,
                    initial_prompt,
                    mode,
                    speech_ended,
                    early,
                } => {
                    self.last_trigger = Some(speech_ended);
                    self.transcribe(utterance, samples, initial_prompt, mode, early);
                }
                Action::CancelTranscription { utterance } => {
                    if let Some(flag) = self.early_runs.remove(&utterance) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                Action::Transfer(h) => self.transfer(*h),
                Action::Hangup => {
                    self.phase = Phase::SelfServed;
                    self.close = true;
                }
            }
        }
    }

    /// Sends queued audio up to `LEAD_MS` ahead of real time, and marks as their audio goes.
    /// Protocols that want audio all the time get silence when nothing is queued.
    fn pump(&mut self) {
        let now = self.now();
        self.out.played_until = self.out.played_until.max(now);
        while let Some(item) = self.out.queue.pop_front() {
            match item {
                Out::Frame(f) if self.out.played_until >= now + LEAD_MS => {
                    self.out.queue.push_front(Out::Frame(f));
                    break;
                }
                Out::Frame(f) => {
                    self.out.played_until += (f.len() / 8) as Millis;
                    self.send(Outgoing::Audio(&f));
                }
                Out::Mark(name) if self.codec.native_marks() => self.send(Outgoing::Mark(&name)),
                Out::Mark(name) => self.emulated_marks.push_back((self.out.played_until, name)),
            }
        }
        if self.codec.wants_continuous_audio() && self.socket_open {
            while self.out.played_until < now + LEAD_MS {
                self.out.played_until += crate::audio::FRAME_MS;
                self.send(Outgoing::Audio(&SILENCE));
            }
        }
    }

    /// Emulated marks whose audio has played by now.
    fn release_marks(&mut self) {
        let now = self.now();
        while self
            .emulated_marks
            .front()
            .is_some_and(|(due, _)| *due <= now)
        {
            if let Some((_, name)) = self.emulated_marks.pop_front() {
                self.tap(|r| r.mark(&name, now));
                let actions = self.engine.feed(Event::Mark(name), now);
                self.apply(actions);
            }
        }
    }

    /// Queues a message for the writer without waiting. A full queue or a writer that gave
    /// up means the peer is not taking audio: the caller cannot hear us, so they go to a
    /// person through the REST API (the socket itself may look healthy to the provider).
    fn send(&mut self, out: Outgoing<'_>) {
        if self.outbox_dead {
            return;
        }
        let Some(frame) = self.codec.encode(out) else {
            return;
        };
        if self.outbox.try_send(Out2::Frame(frame)).is_ok() {
            return;
        }
        self.outbox_dead = true;
        self.out.queue.clear();
        self.state.metrics.inc_wire_errors("peer_not_reading");
        if self.phase == Phase::Live {
            self.fault("the provider stopped reading the media stream");
        }
    }

    /// Runs a transcription on the blocking pool once a decoder state is free. An early one
    /// (the caller only paused) runs only when a state can be had now ([`SttLoad::spare`](super::stt_load::SttLoad::spare)) and
    /// is called off as soon as a caller who has finished waits for a state, so it never holds
    /// one up for long; if refused or called off, the engine asks again at the endpoint.
    fn transcribe(
        &mut self,
        utterance: u64,
        samples: Vec<f32>,
        prompt: Arc<str>,
        mode: crate::stt::SttMode,
        early: bool,
    ) {
        let tx = self.stt_tx.clone();
        let Some(stt) = self.state.stt.get().cloned() else {
            let _ = tx.send((utterance, Err(SttFailure::Overloaded)));
            return;
        };
        let samples_ms = samples.len() / 16;
        let called_off = Arc::new(AtomicBool::new(false));
        if early {
            self.early_runs.insert(utterance, called_off.clone());
        }
        let state = self.state.clone();
        tokio::spawn(
            async move {
                let metrics = &state.metrics;
                // A number pass refines a transcript the call already has (the first hearing
                // stands without it), so like a pause transcript it runs only on a spare state,
                // and it gives way to a waiting caller at any point of its run.
                let refinement = mode.is_refinement();
                let permit = if early || refinement {
                    state.stt_load.spare()
                } else {
                    let queued = Instant::now();
                    let permit = state.stt_load.acquire(STT_WAIT).await;
                    metrics.observe_stt_queue_wait(queued.elapsed());
                    if permit.is_none() {
                        metrics.inc_overload_handoffs();
                    }
                    permit
                };
                let Some(permit) = permit.filter(|_| !called_off.load(Ordering::Relaxed)) else {
                    let _ = tx.send((utterance, Err(SttFailure::Overloaded)));
                    return;
                };
                let shared = state.clone();
                let threads = permit.threads;
                let result = tokio::task::spawn_blocking(move || {
                    // A transcript at a pause gives way to a caller who has finished speaking,
                    // while it is young (see SPECULATIVE_YIELD).
                    let load = &shared.stt_load;
                    let started = Instant::now();
                    let yield_to_waiting = || {
                        called_off.load(Ordering::Relaxed)
                            || load.waiting() > 0
                                && (refinement || started.elapsed() < SPECULATIVE_YIELD)
                    };
                    let opts = crate::stt::engine::RunOpts {
                        threads: permit.threads,
                        cancel: permit
                            .speculative
                            .then_some(&yield_to_waiting as &(dyn Fn() -> bool + Sync)),
                    };
                    let out = stt.transcribe_as(&samples, &prompt, mode, opts);
                    drop(permit);
                    out
                })
                .await;
                let result = match result {
                    Ok(Ok(out)) => {
                        let took = Duration::from_millis(out.elapsed_ms);
                        tracing::debug!(
                            utterance,
                            early,
                            ?mode,
                            audio_ms = samples_ms,
                            threads,
                            took_ms = out.elapsed_ms,
                            "transcribed"
                        );
                        state.stt_load.finished(took);
                        metrics.observe_stt(took);
                        Ok(out.transcript)
                    }
                    Ok(Err(crate::stt::engine::SttError::Busy)) => Err(SttFailure::Overloaded),
                    Ok(Err(crate::stt::engine::SttError::Cancelled)) => {
                        // The engine transcribes the utterance again at its endpoint, or
                        // keeps the first hearing of a number, or no longer wants it.
                        tracing::debug!(
                            utterance,
                            ?mode,
                            "an optional transcription was called off (a caller waiting, or \
                             this caller went on speaking)"
                        );
                        Err(SttFailure::Overloaded)
                    }
                    Ok(Err(e)) => Err(SttFailure::Failed(e.to_string())),
                    Err(e) => Err(SttFailure::Failed(format!(
                        "transcription task failed: {e}"
                    ))),
                };
                let _ = tx.send((utterance, result));
            }
            .in_current_span(),
        );
    }

    fn transfer(&mut self, h: Handoff) {
        self.phase = Phase::Transferring;
        let card = &h.card;
        let latency_ms = self.last_trigger.map(|t| self.now().saturating_sub(t));
        tracing::info!(queue = %card.queue, reason = %card.reason, priority = card.priority.as_str(), ?latency_ms, "transfer");
        self.state.metrics.inc_escalations(&card.reason);
        if let Some(ms) = latency_ms {
            self.state
                .metrics
                .observe_decision_latency(Duration::from_millis(ms));
        }
        if let Some(url) = self.state.settings.handoff_webhook.clone() {
            let http = self.state.http.clone();
            let body = serde_json::to_value(card).unwrap_or_default();
            tokio::spawn(
                async move {
                    if let Err(e) = crate::http::post_json(&http, &url, &body).await {
                        tracing::warn!(error = %e, "handoff webhook failed (card is stored)");
                    }
                }
                .in_current_span(),
            );
        }
        let records = self.state.records.clone();
        let handoff_id = h.id.clone();
        match self.control.transfer(&self.call_sid, &h) {
            Started::HandBack => {
                // The PBX continues its dialplan and asks warmline for the route.
                self.out.queue.clear();
                self.send(Outgoing::Hangup);
                records.send(Op::TransferStatus {
                    handoff_id,
                    status: TransferStatus::Accepted,
                    detail: "handed back to the PBX dialplan".into(),
                });
                self.phase = Phase::Transferred;
                self.close = true;
            }
            Started::Request(request) => {
                let tx = self.rest_tx.clone();
                let metrics = self.state.metrics.clone();
                tokio::spawn(
                    async move {
                        let result = request.await;
                        let (status, detail) = match &result {
                            Ok(attempts) => (
                                TransferStatus::Accepted,
                                format!("accepted after {attempts} attempt(s)"),
                            ),
                            Err((kind, e)) => {
                                metrics.inc_transfer_failures(kind);
                                (TransferStatus::Failed, e.clone())
                            }
                        };
                        records.send(Op::TransferStatus {
                            handoff_id,
                            status,
                            detail: detail.clone(),
                        });
                        let _ = tx.send(result.map_err(|_| detail));
                    }
                    .in_current_span(),
                );
            }
        }
    }

    fn on_rest_result(&mut self, result: Result<u32, String>) {
        match result {
            Ok(attempts) => {
                tracing::info!(attempts, "transfer accepted by the provider");
                self.phase = Phase::Transferred;
                self.close |= self.stop_seen;
            }
            Err(e) => {
                // The caller must not be left hanging: closing the stream starts the provider's
                // fallback, which tells them plainly and dials the team directly.
                tracing::error!(error = %e, "transfer failed: closing the stream so the fallback dials");
                self.phase = Phase::TransferFailed;
                self.close = true;
            }
        }
    }
}

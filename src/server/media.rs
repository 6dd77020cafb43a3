//! The media WebSocket: one task per call drives one engine.
//!
//! Inbound Twilio messages become engine events; engine actions become outbound `media` /
//! `mark` / `clear` messages, transcription jobs, REST transfers and call records. Prompts are
//! streamed at the caller's pace (a little ahead of real time, never the whole prompt at once)
//! so a `clear` really stops what is left.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::AppState;
use super::admission;
use super::log_limit::LogLimit;
use super::records::Op;
use crate::audio::FRAME_SAMPLES_8K;
use crate::call::{Action, CallInfo, Engine, Event, Millis, SttFailure, Transcript};
use crate::config::Limits;
use crate::handoff::Handoff;
use crate::telephony::twilio::messages::{self, Inbound, Start};
use crate::telephony::twilio::twiml;

/// Largest media payload accepted in one message (Twilio sends 160 bytes per 20 ms).
const MAX_PAYLOAD: usize = 8_000;
/// Largest WebSocket message accepted at all.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a stream may take to say `start`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Outbound audio is kept this far ahead of real time: enough to ride out scheduling jitter,
/// little enough that `clear` leaves almost nothing playing.
const LEAD_MS: u64 = 80;
/// A transcription waits this long for a free model state before the caller is handed over.
const STT_WAIT: Duration = Duration::from_millis(5_000);
/// After a transfer is accepted Twilio stops the stream; do not wait longer than this.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// Outbound messages queued for the socket writer. Prompts are paced ~80 ms ahead, so a full
/// queue (over a second of audio) means the peer has stopped reading.
const OUTBOX: usize = 64;
/// The close frame at the end of a call gets this long; the peer may be gone.
const SEND_CLOSE_WAIT: Duration = Duration::from_millis(500);
/// A `chunk` this far past the last one is not a gap in the audio but a bogus number; the
/// frame is used and the number ignored, so one bad field cannot make the call deaf.
const MAX_CHUNK_JUMP: u64 = 50 * 60 * 60;

pub async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(state, socket))
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

async fn run(state: Arc<AppState>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let Some(start) = await_start(&state, &mut stream).await else {
        let _ = tokio::time::timeout(SEND_CLOSE_WAIT, sink.send(Message::Close(None))).await;
        return;
    };
    let span = tracing::info_span!("call", call_sid = %start.call_sid);
    async move {
        let Some((slot, promised)) = admit(&state, &start) else {
            let _ = tokio::time::timeout(SEND_CLOSE_WAIT, sink.send(Message::Close(None))).await;
            return;
        };
        let _active = state.metrics.track_active_call();
        let outcome = drive(&state, start, promised, sink, stream).await;
        state.metrics.inc_calls(outcome);
        drop(slot);
    }
    .instrument(span)
    .await
}

/// Claims the call slot its voice webhook reserved, with the single-use token it was given.
fn admit(state: &AppState, start: &Start) -> Option<(admission::Slot, admission::Promised)> {
    let given = start
        .custom_parameters
        .get("token")
        .map(String::as_str)
        .unwrap_or("");
    let claimed = state
        .admission
        .claim(&start.call_sid, given, std::time::Instant::now());
    let (slot, promised) = match claimed {
        Ok(c) => c,
        Err(e) => {
            warn_limited(
                &STREAM_LOG,
                "stream refused before any audio",
                &e.to_string(),
            );
            state.metrics.inc_wire_errors("bad_stream_token");
            return None;
        }
    };
    if start.account_sid != promised.account_sid {
        warn_limited(
            &STREAM_LOG,
            "stream refused before any audio",
            "start.accountSid differs from the voice webhook's",
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

/// Names a socket error for the wire-error metric.
fn socket_error_kind(e: &axum::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Capacity")
    {
        "oversized_frame"
    } else if text.to_ascii_lowercase().contains("utf-8") || text.contains("UTF") {
        "non_utf8_text"
    } else {
        "socket_error"
    }
}

/// Reads until `start`, counting anything malformed on the way; a peer that sends more than
/// `limits.bad_frames_before_start` of those is cut off (it has not proven it is a call).
async fn await_start(state: &AppState, stream: &mut Stream) -> Option<Start> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let allowed = state.settings.limits.bad_frames_before_start;
    let mut bad = 0u32;
    loop {
        if bad > allowed {
            warn_limited(
                &STREAM_LOG,
                "too many bad frames before `start`: closing",
                "",
            );
            state.metrics.inc_wire_errors("too_many_bad_frames");
            return None;
        }
        let msg = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                state.metrics.inc_wire_errors(socket_error_kind(&e));
                return None;
            }
            Ok(None) => return None,
            Err(_) => {
                warn_limited(&STREAM_LOG, "no `start` in time: closing", "");
                state.metrics.inc_wire_errors("no_start");
                return None;
            }
        };
        match msg {
            Message::Text(t) => match messages::parse_inbound(&t, MAX_PAYLOAD) {
                Ok(Inbound::Start(s)) => return Some(s),
                Ok(Inbound::Connected) => {}
                Ok(other) => {
                    bad += 1;
                    warn_limited(&WIRE_LOG, "event before `start`: ignored", kind(&other));
                    state.metrics.inc_wire_errors("before_start");
                }
                Err(e) => {
                    bad += 1;
                    warn_limited(&WIRE_LOG, "bad message before `start`", &e.to_string());
                    state.metrics.inc_wire_errors(e.kind());
                }
            },
            Message::Close(_) => return None,
            Message::Binary(_) => {
                bad += 1;
                state.metrics.inc_wire_errors("binary");
            }
            _ => {}
        }
    }
}

fn kind(i: &Inbound) -> &'static str {
    match i {
        Inbound::Connected => "connected",
        Inbound::Start(_) => "start",
        Inbound::Media(_) => "media",
        Inbound::Dtmf { .. } => "dtmf",
        Inbound::Mark { .. } => "mark",
        Inbound::Stop => "stop",
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
    fn outcome(self) -> &'static str {
        match self {
            Phase::Live | Phase::Dropped => "stream_dropped",
            Phase::Transferring | Phase::TransferFailed => "transfer_failed",
            Phase::Transferred => "transferred",
            Phase::SelfServed => "self_served",
            Phase::CallerHungUp => "caller_hangup",
        }
    }
}

struct Driver {
    state: Arc<AppState>,
    engine: Engine,
    call_sid: String,
    stream_sid: String,
    /// To the socket writer task; never awaited, so a peer that stops reading cannot stall
    /// the call (see [`Driver::send`]).
    outbox: mpsc::Sender<Message>,
    started: Instant,
    out: Outbound,
    stt_tx: mpsc::UnboundedSender<(u64, Result<Transcript, SttFailure>)>,
    rest_tx: mpsc::UnboundedSender<Result<u32, String>>,
    phase: Phase,
    /// When the caller last stopped speaking (or pressed a key): decision latency starts here.
    last_trigger: Option<Millis>,
    last_chunk: Option<u64>,
    /// Caller audio received so far, in ms; kept within real time plus a burst.
    audio_ms: Millis,
    /// Twilio said `stop` while the transfer request was in flight: end once it answers.
    stop_seen: bool,
    socket_open: bool,
    /// The writer gave up (peer not reading, or the socket failed): nothing more goes out.
    outbox_dead: bool,
    /// The server is draining: once a transfer is accepted the call ends without waiting
    /// for the provider's `stop`.
    draining: bool,
    close: bool,
}

/// Owns the socket's sending half: every send has `limits.send_ms` to complete, so a peer
/// that stops reading costs one task for seconds, not a wedged call forever.
fn spawn_writer(
    mut sink: Sink,
    send_timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(OUTBOX);
    tokio::spawn(
        async move {
            while let Some(msg) = rx.recv().await {
                let closing = matches!(msg, Message::Close(_));
                match tokio::time::timeout(send_timeout, sink.send(msg)).await {
                    Ok(Ok(())) if closing => break,
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "send failed (socket closing)");
                        break;
                    }
                    Err(_) => {
                        metrics.inc_wire_errors("send_timeout");
                        warn_limited(&WIRE_LOG, "peer stopped reading: send timed out", "");
                        break;
                    }
                }
            }
        }
        .in_current_span(),
    );
    tx
}

async fn drive(
    state: &Arc<AppState>,
    start: Start,
    promised: admission::Promised,
    sink: Sink,
    mut stream: Stream,
) -> &'static str {
    let info = CallInfo {
        call_sid: start.call_sid.clone(),
        from: promised.from,
        to: promised.to,
        started_at: chrono::Utc::now(),
        handoff_id: random_id(),
    };
    state.records.send(Op::Begin {
        call_sid: info.call_sid.clone(),
        from: info.from.clone(),
        to: info.to.clone(),
        started_at: info.started_at.to_rfc3339(),
    });
    let limits = &state.settings.limits;
    let outbox = spawn_writer(sink, Limits::ms(limits.send_ms), state.metrics.clone());
    let engine = match Engine::new(info, state.book.clone()) {
        Ok(e) => e,
        Err(e) => {
            // Closing the stream makes Twilio ask /twilio/stream-ended, which dials a person.
            tracing::error!(error = %e, "cannot start the call engine: failing open");
            let _ = outbox.try_send(Message::Close(None));
            return "stream_dropped";
        }
    };
    let (stt_tx, mut stt_rx) = mpsc::unbounded_channel();
    let (rest_tx, mut rest_rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        state: state.clone(),
        engine,
        call_sid: start.call_sid.clone(),
        stream_sid: start.stream_sid.clone(),
        outbox,
        started: Instant::now(),
        out: Outbound::default(),
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
    };
    tracing::info!(stream_sid = %d.stream_sid, "stream started");
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
            msg = stream.next(), if d.socket_open => {
                heard = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => d.on_text(&t),
                    Some(Ok(Message::Binary(_))) => d.wire_error("binary", "binary frame ignored"),
                    Some(Ok(Message::Close(_))) | None => d.on_socket_gone("socket closed"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let kind = socket_error_kind(&e);
                        d.state.metrics.inc_wire_errors(kind);
                        d.on_socket_gone(&format!("socket error ({kind}): {e}"));
                    }
                }
            },
            Some((utterance, result)) = stt_rx.recv() => {
                let now = d.now();
                let actions = d.engine.feed(Event::Transcribed { utterance, result }, now);
                d.apply(actions);
            }
            Some(result) = rest_rx.recv() => d.on_rest_result(result),
            _ = tick.tick() => {
                d.pump();
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
    d.state.records.send(Op::Finish {
        call_sid: d.call_sid.clone(),
        outcome: outcome.to_string(),
        ended_at: chrono::Utc::now().to_rfc3339(),
    });
    let _ = d.outbox.try_send(Message::Close(None));
    tracing::info!(outcome, "call ended");
    outcome
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Driver {
    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
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

    fn on_text(&mut self, text: &str) {
        let msg = match messages::parse_inbound(text, MAX_PAYLOAD) {
            Ok(m) => m,
            Err(e) => return self.wire_error(e.kind(), &e.to_string()),
        };
        let now = self.now();
        let actions = match msg {
            Inbound::Media(m) => {
                match (m.chunk, self.last_chunk) {
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
                if !self.within_pace(m.payload.len()) {
                    return self.wire_error("media_too_fast", "audio ahead of real time dropped");
                }
                self.engine.feed(Event::Audio(&m.payload), now)
            }
            Inbound::Dtmf { digit } => {
                self.last_trigger = Some(now);
                self.engine.feed(Event::Dtmf(digit), now)
            }
            Inbound::Mark { name } => self.engine.feed(Event::Mark(name), now),
            Inbound::Stop => {
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
            Inbound::Start(_) => {
                return self.wire_error("duplicate_start", "second `start` ignored");
            }
            Inbound::Connected => return,
        };
        self.apply(actions);
    }

    /// The socket went away without `stop`: record a handoff so `/twilio/stream-ended` can
    /// dial a person with context, but do not call the REST API (Twilio is already moving on).
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
                    let msg = messages::clear_out(&self.stream_sid);
                    self.send(msg);
                }
                Action::Transcribe {
                    utterance,
                    samples,
                    initial_prompt,
                    speech_ended,
                    early,
                } => {
                    self.last_trigger = Some(speech_ended);
                    self.transcribe(utterance, samples, initial_prompt, early);
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
    fn pump(&mut self) {
        let now = self.now();
        self.out.played_until = self.out.played_until.max(now);
        while let Some(item) = self.out.queue.front() {
            match item {
                Out::Frame(_) if self.out.played_until >= now + LEAD_MS => break,
                Out::Frame(f) => {
                    let msg = messages::media_out(&self.stream_sid, f);
                    self.out.played_until += (f.len() / 8) as Millis;
                    self.out.queue.pop_front();
                    self.send(msg);
                }
                Out::Mark(name) => {
                    let msg = messages::mark_out(&self.stream_sid, name);
                    self.out.queue.pop_front();
                    self.send(msg);
                }
            }
        }
    }

    /// Queues a message for the writer without waiting. A full queue or a writer that gave
    /// up means the peer is not taking audio: the caller cannot hear us, so they go to a
    /// person through the REST API (the socket itself may look healthy to the provider).
    fn send(&mut self, text: String) {
        if self.outbox_dead {
            return;
        }
        if self.outbox.try_send(Message::Text(text.into())).is_ok() {
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
    /// (the caller only paused) runs only when a state is spare right now, so it never delays
    /// a caller who has finished; if refused, the engine asks again at the endpoint.
    fn transcribe(&self, utterance: u64, samples: Vec<f32>, prompt: Arc<str>, early: bool) {
        let tx = self.stt_tx.clone();
        let Some(stt) = self.state.stt.get().cloned() else {
            let _ = tx.send((utterance, Err(SttFailure::Overloaded)));
            return;
        };
        let state = self.state.clone();
        tokio::spawn(
            async move {
                let metrics = &state.metrics;
                let permit = if early {
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
                let Some(permit) = permit else {
                    let _ = tx.send((utterance, Err(SttFailure::Overloaded)));
                    return;
                };
                let result = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    crate::stt::engine::SttEngine::transcribe(&stt, &samples, &prompt)
                })
                .await;
                let result = match result {
                    Ok(Ok(out)) => {
                        let took = Duration::from_millis(out.elapsed_ms);
                        state.stt_load.finished(took);
                        metrics.observe_stt(took);
                        Ok(out.transcript)
                    }
                    Ok(Err(crate::stt::engine::SttError::Busy)) => Err(SttFailure::Overloaded),
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
        tracing::info!(queue = %card.queue, reason = %card.reason, priority = card.priority.as_str(), "transfer");
        self.state.metrics.inc_escalations(&card.reason);
        if let Some(t) = self.last_trigger {
            let ms = self.now().saturating_sub(t);
            self.state
                .metrics
                .observe_decision_latency(Duration::from_millis(ms));
        }
        let whisper = format!(
            "{}/twilio/agent-whisper/{}",
            self.state.settings.public_url, h.id
        );
        let doc = twiml::transfer(&h.caller_say, &card.target, h.sip, &whisper);
        if let Some(url) = self.state.settings.handoff_webhook.clone() {
            let http = self.state.http.clone();
            let body = serde_json::to_value(card).unwrap_or_default();
            tokio::spawn(
                async move {
                    if let Err(e) =
                        crate::telephony::twilio::rest::post_json(&http, &url, &body).await
                    {
                        tracing::warn!(error = %e, "handoff webhook failed (card is stored)");
                    }
                }
                .in_current_span(),
            );
        }
        let tx = self.rest_tx.clone();
        let Some(rest) = self.state.rest.clone() else {
            let _ = tx.send(Err("no Twilio credentials configured".into()));
            return;
        };
        let call_sid = self.call_sid.clone();
        let records = self.state.records.clone();
        let handoff_id = h.id.clone();
        let metrics = self.state.metrics.clone();
        tokio::spawn(
            async move {
                let result = rest.update_call_twiml(&call_sid, &doc).await;
                let (status, detail) = match &result {
                    Ok(ok) => (
                        "accepted",
                        format!("accepted after {} attempt(s)", ok.attempts),
                    ),
                    Err(e) => {
                        metrics.inc_transfer_failures(e.kind());
                        ("failed", e.to_string())
                    }
                };
                records.send(Op::TransferStatus {
                    handoff_id,
                    status,
                    detail: detail.clone(),
                });
                let _ = tx.send(result.map(|ok| ok.attempts).map_err(|_| detail));
            }
            .in_current_span(),
        );
    }

    fn on_rest_result(&mut self, result: Result<u32, String>) {
        match result {
            Ok(attempts) => {
                tracing::info!(attempts, "transfer accepted by the provider");
                self.phase = Phase::Transferred;
                self.close |= self.stop_seen;
            }
            Err(e) => {
                // The caller must not be left hanging: closing the stream makes Twilio run the
                // <Connect action>, whose answer tells them plainly and dials the team directly.
                tracing::error!(error = %e, "transfer failed: closing the stream so the fallback dials");
                self.phase = Phase::TransferFailed;
                self.close = true;
            }
        }
    }
}

//! The media WebSocket: one task per call drives one engine.
//!
//! Inbound Twilio messages become engine events; engine actions become outbound `media` /
//! `mark` / `clear` messages, transcription jobs, REST transfers and call records. Prompts are
//! streamed at the caller's pace (a little ahead of real time, never the whole prompt at once)
//! so a `clear` really stops what is left.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::AppState;
use super::records::Op;
use super::twilio::stream_token;
use crate::audio::FRAME_SAMPLES_8K;
use crate::call::{Action, CallInfo, Engine, Event, Millis, SttFailure, Transcript};
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
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    let span = tracing::info_span!("call", call_sid = %start.call_sid);
    async move {
        let expected = stream_token(&state.token_key, &start.call_sid);
        let given = start
            .custom_parameters
            .get("token")
            .map(String::as_str)
            .unwrap_or("");
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            tracing::warn!("stream without a valid token: closed before any audio");
            state.metrics.inc_wire_errors("bad_stream_token");
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
        state.active_calls.fetch_add(1, Ordering::SeqCst);
        state.metrics.inc_active_calls();
        let outcome = drive(&state, start, sink, stream).await;
        state.metrics.dec_active_calls();
        state.metrics.inc_calls(outcome);
        state.active_calls.fetch_sub(1, Ordering::SeqCst);
    }
    .instrument(span)
    .await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads until `start`, counting anything malformed on the way.
async fn await_start(state: &AppState, stream: &mut Stream) -> Option<Start> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => return None,
            Err(_) => {
                tracing::warn!("no `start` within {START_TIMEOUT:?}: closing");
                state.metrics.inc_wire_errors("no_start");
                return None;
            }
        };
        match msg {
            Message::Text(t) => match messages::parse_inbound(&t, MAX_PAYLOAD) {
                Ok(Inbound::Start(s)) => return Some(s),
                Ok(Inbound::Connected) => {}
                Ok(other) => {
                    tracing::warn!(event = ?kind(&other), "event before `start`: ignored");
                    state.metrics.inc_wire_errors("before_start");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bad message before `start`");
                    state.metrics.inc_wire_errors(e.kind());
                }
            },
            Message::Close(_) => return None,
            Message::Binary(_) => state.metrics.inc_wire_errors("binary"),
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
    sink: Sink,
    started: Instant,
    out: Outbound,
    stt_tx: mpsc::UnboundedSender<(u64, Result<Transcript, SttFailure>)>,
    rest_tx: mpsc::UnboundedSender<Result<u32, String>>,
    phase: Phase,
    /// When the caller last stopped speaking (or pressed a key): decision latency starts here.
    last_trigger: Option<Millis>,
    last_chunk: Option<u64>,
    /// Twilio said `stop` while the transfer request was in flight: end once it answers.
    stop_seen: bool,
    socket_open: bool,
    close: bool,
}

async fn drive(
    state: &Arc<AppState>,
    start: Start,
    sink: Sink,
    mut stream: Stream,
) -> &'static str {
    let info = CallInfo {
        call_sid: start.call_sid.clone(),
        from: start
            .custom_parameters
            .get("From")
            .cloned()
            .unwrap_or_default(),
        to: start
            .custom_parameters
            .get("To")
            .cloned()
            .unwrap_or_default(),
        started_at: chrono::Utc::now(),
        handoff_id: random_id(),
    };
    state.records.send(Op::Begin {
        call_sid: info.call_sid.clone(),
        from: info.from.clone(),
        to: info.to.clone(),
        started_at: info.started_at.to_rfc3339(),
    });
    let engine = match Engine::new(info, state.book.clone()) {
        Ok(e) => e,
        Err(e) => {
            // Closing the stream makes Twilio ask /twilio/stream-ended, which dials a person.
            tracing::error!(error = %e, "cannot start the call engine: failing open");
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
        sink,
        started: Instant::now(),
        out: Outbound::default(),
        stt_tx,
        rest_tx,
        phase: Phase::Live,
        last_trigger: None,
        last_chunk: None,
        stop_seen: false,
        socket_open: true,
        close: false,
    };
    tracing::info!(stream_sid = %d.stream_sid, "stream started");
    let actions = d.engine.start(0);
    d.apply(actions).await;
    if d.state.stt.get().is_none() || d.overloaded() {
        let now = d.now();
        let actions = d.engine.feed(Event::Overloaded, now);
        d.state.metrics.inc_overload_handoffs();
        d.apply(actions).await;
    }

    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    while !d.close {
        let stop_wait = async {
            match stop_deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next(), if d.socket_open => match msg {
                Some(Ok(Message::Text(t))) => d.on_text(&t).await,
                Some(Ok(Message::Binary(_))) => d.wire_error("binary", "binary frame ignored"),
                Some(Ok(Message::Close(_))) | None => { d.on_socket_gone("socket closed").await; }
                Some(Ok(_)) => {}
                Some(Err(e)) => { d.on_socket_gone(&format!("socket error: {e}")).await; }
            },
            Some((utterance, result)) = stt_rx.recv() => {
                let now = d.now();
                let actions = d.engine.feed(Event::Transcribed { utterance, result }, now);
                d.apply(actions).await;
            }
            Some(result) = rest_rx.recv() => d.on_rest_result(result).await,
            _ = tick.tick() => {
                d.pump().await;
                let now = d.now();
                let actions = d.engine.feed(Event::Tick, now);
                d.apply(actions).await;
            }
            Ok(()) = shutdown.changed(), if d.phase == Phase::Live => {
                let now = d.now();
                let actions = d.engine.feed(Event::Fault("server shutting down".into()), now);
                d.apply(actions).await;
            }
            _ = stop_wait => {
                tracing::warn!("no `stop` after the transfer was accepted: closing");
                d.close = true;
            }
        }
        if d.phase == Phase::Transferred && stop_deadline.is_none() {
            stop_deadline = Some(tokio::time::Instant::now() + STOP_WAIT);
        }
    }
    let outcome = d.phase.outcome();
    d.state.records.send(Op::Finish {
        call_sid: d.call_sid.clone(),
        outcome: outcome.to_string(),
        ended_at: chrono::Utc::now().to_rfc3339(),
    });
    let _ = d.sink.send(Message::Close(None)).await;
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
        tracing::warn!(kind, detail, "wire error");
        self.state.metrics.inc_wire_errors(kind);
    }

    async fn on_text(&mut self, text: &str) {
        let msg = match messages::parse_inbound(text, MAX_PAYLOAD) {
            Ok(m) => m,
            Err(e) => return self.wire_error(e.kind(), &e.to_string()),
        };
        let now = self.now();
        let actions = match msg {
            Inbound::Media(m) => {
                if let (Some(c), Some(last)) = (m.chunk, self.last_chunk)
                    && c <= last
                {
                    return self.wire_error("out_of_order", &format!("chunk {c} after {last}"));
                }
                self.last_chunk = m.chunk.or(self.last_chunk);
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
                        let _ = self.engine.feed(Event::Hangup, now);
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
        self.apply(actions).await;
    }

    /// The socket went away without `stop`: record a handoff so `/twilio/stream-ended` can
    /// dial a person with context, but do not call the REST API (Twilio is already moving on).
    async fn on_socket_gone(&mut self, why: &str) {
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

    async fn apply(&mut self, actions: Vec<Action>) {
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
                    self.pump().await;
                }
                Action::Clear => {
                    self.out.queue.clear();
                    self.out.played_until = self.now();
                    let msg = messages::clear_out(&self.stream_sid);
                    self.send(msg).await;
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
    async fn pump(&mut self) {
        let now = self.now();
        self.out.played_until = self.out.played_until.max(now);
        while let Some(item) = self.out.queue.front() {
            match item {
                Out::Frame(_) if self.out.played_until >= now + LEAD_MS => break,
                Out::Frame(f) => {
                    let msg = messages::media_out(&self.stream_sid, f);
                    self.out.played_until += (f.len() / 8) as Millis;
                    self.out.queue.pop_front();
                    self.send(msg).await;
                }
                Out::Mark(name) => {
                    let msg = messages::mark_out(&self.stream_sid, name);
                    self.out.queue.pop_front();
                    self.send(msg).await;
                }
            }
        }
    }

    async fn send(&mut self, text: String) {
        if let Err(e) = self.sink.send(Message::Text(text.into())).await {
            tracing::debug!(error = %e, "send failed (socket closing)");
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

    async fn on_rest_result(&mut self, result: Result<u32, String>) {
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

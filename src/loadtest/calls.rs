//! Placing the calls and driving each one from the provider's first request to its end,
//! whatever the provider: answered, a media stream driven by the simulated caller, ended by
//! the provider's transfer, by warmline closing the stream, by the caller's patience, or by
//! `--max-seconds`. The call's record is then read for the queue, overload and timings.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use super::LoadtestOptions;
use super::caller::{Cmd, Heard, Wire, WireEnd, WireStats, script};
use super::providers::{AfterClose, Answer, Cloud, Media, Provider, Transfer};
use crate::replay::fixture::Fixture;

/// A provider's request racing warmline's own close of the stream by less than this still
/// counts as the transfer.
const CLOSE_RACE: Duration = Duration::from_millis(500);
/// Between the provider accepting the transfer and its end of the media stream.
const REDIRECT_DELAY: Duration = Duration::from_millis(100);
/// The number every simulated caller dials.
pub(super) const CALLED: &str = "+15550009000";

/// Why a call was lost.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error("refusing {0}: loopback only")]
    NotLoopback(String),
    #[error("{url}: {detail}")]
    Http { url: String, detail: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the call was answered with neither a stream nor a person: {0}")]
    Answer(String),
    #[error("opening the media connection: {0}")]
    Media(String),
    #[error("after the stream: {0}")]
    AfterStream(String),
    #[error("a transfer that moves nobody to a person: {0}")]
    NotATransfer(String),
    #[error("neither a transfer nor a goodbye within {0} s")]
    Timeout(u64),
}

/// Only 127.0.0.1 or localhost: load is only ever put on one's own machine.
pub(super) fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.host_str(), Some("127.0.0.1" | "localhost")))
}

pub(super) fn loopback_only(url: &str) -> Result<(), CallError> {
    if is_loopback(url) {
        Ok(())
    } else {
        Err(CallError::NotLoopback(url.to_string()))
    }
}

/// The media WebSocket a provider's answer pointed at, opened only on loopback.
pub(super) async fn open_stream(url: &str) -> Result<super::fakes::MediaLink, CallError> {
    loopback_only(url)?;
    super::fakes::MediaLink::websocket(url)
        .await
        .map_err(|e| CallError::Media(e.to_string()))
}

/// What every call needs.
pub(super) struct Ctx {
    pub(super) base: String,
    pub(super) provider: Provider,
    /// Twilio's account and auth token (`--account-sid`, `--auth-token`).
    pub(super) account_sid: String,
    pub(super) auth_token: String,
    pub(super) http: reqwest::Client,
    pub(super) cloud: Arc<Cloud>,
    /// The server's AudioSocket listener (Asterisk).
    pub(super) audiosocket: Option<SocketAddr>,
    pub(super) call_timeout: Duration,
    pub(super) deadline: Instant,
    pub(super) live: AtomicUsize,
    pub(super) peak: AtomicUsize,
}

impl Ctx {
    /// A signed form POST to warmline as the provider makes it; the body of a 2xx answer.
    pub(super) async fn post_form(
        &self,
        url: &str,
        params: &[(String, String)],
        headers: &[(&str, String)],
    ) -> Result<String, CallError> {
        loopback_only(url)?;
        let mut req = self.http.post(url).form(params);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let response = req.send().await.map_err(|e| CallError::Http {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(CallError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        Ok(body)
    }
}

/// How a call ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum End {
    /// The provider's transfer arrived: a REST call update with a `<Dial>` (Twilio), a LaML
    /// update to the transfer document (SignalWire), a call transfer to it (Plivo), a Call
    /// Control `transfer` (Telnyx), a hand-back routed to a queue (Asterisk).
    Transferred,
    /// Sent to a person by the provider's fail-open path instead: the answer's `<Dial>`, the
    /// stream-ended `<Dial>`, Telnyx's fallback transfer, a queue for a refused AudioSocket.
    FallbackDial,
    /// warmline said goodbye and ended the stream; the provider hung up.
    Goodbye,
    /// Neither a transfer nor a goodbye: the caller was lost.
    Failed { reason: String },
    /// Still running when `--max-seconds` ran out (not judged).
    CutOff,
}

/// One call's result.
#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    pub n: usize,
    /// The provider's id for the call (CallSid, CallUUID, call_control_id, channel UUID).
    pub call_sid: String,
    pub fixture: String,
    #[serde(flatten)]
    pub end: End,
    /// Transfer arrival − end of the trigger turn's audio.
    pub decision_latency_ms: Option<f64>,
    /// The transfer came before the trigger turn had been fully spoken.
    pub early: bool,
    /// warmline handed the caller over because it was at capacity.
    pub overload: bool,
    pub queue: Option<String>,
    /// How the outcome differs from the fixture's expectation, if it does.
    pub unexpected: Option<String>,
    pub frames_sent: u64,
    /// Frames sent more than one frame period behind the real-time clock.
    pub frames_late: u64,
    pub worst_late_ms: f64,
    /// End of the trigger turn's audio → warmline had the transcript that led to the transfer
    /// (endpointing + STT queue + STT; call clocks aligned at `start`, so ±a few ms).
    pub transcript_ms: Option<f64>,
    /// warmline held a routine transfer in case the caller went on.
    pub held: bool,
    /// What the provider's transfer said: the TwiML, the document URL, the transfer
    /// request's body, or the hand-back and the route it led to.
    pub transfer: Option<String>,
    /// The 16 random bytes the call's id comes from (AudioSocket sends them as they are).
    #[serde(skip)]
    pub(super) id: [u8; 16],
    #[serde(skip)]
    connected: Option<Instant>,
    #[serde(skip)]
    trigger_end: Option<Instant>,
}

impl CallOutcome {
    fn new(n: usize, fixture: &Fixture, provider: Provider) -> CallOutcome {
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        // Version 4, variant 1, so the id is a valid UUID where the provider uses one.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        CallOutcome {
            n,
            call_sid: provider.call_id(&id),
            fixture: fixture.id.clone(),
            end: End::Failed {
                reason: "not finished".into(),
            },
            decision_latency_ms: None,
            early: false,
            overload: false,
            queue: None,
            unexpected: None,
            frames_sent: 0,
            frames_late: 0,
            worst_late_ms: 0.0,
            transcript_ms: None,
            held: false,
            transfer: None,
            id,
            connected: None,
            trigger_end: None,
        }
    }

    pub(super) fn caller_number(&self) -> String {
        format!("+1555{:07}", 2_000_000 + self.n)
    }

    fn absorb(&mut self, wire: WireStats) {
        self.frames_sent = wire.frames;
        self.frames_late = wire.late;
        self.worst_late_ms = wire.worst_late.as_secs_f64() * 1000.0;
    }
}

/// Places calls in order, at most `concurrency` at a time (a new one as soon as one ends),
/// until all are placed or the deadline passes.
pub(super) async fn place_calls(
    ctx: &Arc<Ctx>,
    fixtures: &[Arc<Fixture>],
    opts: &LoadtestOptions,
) -> Vec<CallOutcome> {
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let deadline = tokio::time::Instant::from_std(ctx.deadline);
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..opts.calls {
        tokio::time::sleep_until((started + opts.ramp_delay(n)).min(deadline)).await;
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.ok(),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(permit) = permit.filter(|_| Instant::now() < ctx.deadline) else {
            break;
        };
        let ctx = ctx.clone();
        let fixture = fixtures[n % fixtures.len()].clone();
        tasks.spawn(async move {
            let _permit = permit;
            run_call(&ctx, n, &fixture).await
        });
    }
    let mut done = tasks.join_all().await;
    done.sort_by_key(|c| c.n);
    done
}

async fn run_call(ctx: &Ctx, n: usize, fixture: &Fixture) -> CallOutcome {
    let live = ctx.live.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.peak.fetch_max(live, Ordering::SeqCst);
    let mut out = CallOutcome::new(n, fixture, ctx.provider);
    if let Err(e) = drive_call(ctx, fixture, &mut out).await {
        out.end = End::Failed {
            reason: e.to_string(),
        };
    }
    ctx.live.fetch_sub(1, Ordering::SeqCst);
    if matches!(out.end, End::Transferred | End::FallbackDial) {
        inspect_handoff(ctx, fixture, &mut out).await;
    }
    out.unexpected = out.unexpected.take().or_else(|| unexpected(fixture, &out));
    out
}

/// Why the end differs from what the fixture expects (the queue is checked with the record).
fn unexpected(fixture: &Fixture, out: &CallOutcome) -> Option<String> {
    let transferred = matches!(out.end, End::Transferred | End::FallbackDial);
    match (&out.end, fixture.expect.transfer) {
        (End::Goodbye, true) => Some("goodbye, but a transfer was expected".into()),
        (_, false) if transferred => Some("transferred, but no transfer was expected".into()),
        _ => None,
    }
}

enum Ending {
    Transfer(Result<Transfer, CallError>),
    Closed(WireEnd),
    Timeout,
    CutOff,
}

/// One whole call, the provider's first request to the end; `out` is filled in as it goes.
async fn drive_call(ctx: &Ctx, fixture: &Fixture, out: &mut CallOutcome) -> Result<(), CallError> {
    let call = out.call_sid.clone();
    let transfer = ctx.provider.transfer(ctx, &call);
    tokio::pin!(transfer);
    let Media {
        link,
        client,
        after,
    } = match ctx.provider.answer(ctx, out).await? {
        Answer::Stream(media) => media,
        Answer::ToPerson => {
            // Straight to a person: warmline was full or not ready.
            out.end = End::FallbackDial;
            out.overload = true;
            return Ok(());
        }
    };
    let heard = Arc::new(Mutex::new(Heard::new(client.continuous_audio())));
    let (cmds, cmd_rx) = mpsc::channel(4);
    let mut wire = tokio::spawn(Wire::new(link, client, heard.clone()).run(cmd_rx));
    let mut turn_ends = vec![None; fixture.turns.len()];
    let connected = Instant::now();
    out.connected = Some(connected);
    let ending = tokio::select! {
        never = script(fixture, &heard, &cmds, &mut turn_ends, connected) => match never {},
        t = &mut transfer => Ending::Transfer(t),
        end = &mut wire => Ending::Closed(end.unwrap_or_default()),
        _ = tokio::time::sleep(ctx.call_timeout) => Ending::Timeout,
        _ = tokio::time::sleep_until(ctx.deadline.into()) => Ending::CutOff,
    };
    let transferred = match ending {
        Ending::Closed(end) => {
            out.absorb(end.stats);
            // A transfer racing warmline's own close of the stream still wins.
            match tokio::time::timeout(CLOSE_RACE, &mut transfer).await {
                Ok(t) => Some(t?),
                Err(_) => match ctx
                    .provider
                    .after_close(ctx, out, after.as_deref(), &end)
                    .await?
                {
                    AfterClose::Goodbye => {
                        out.end = End::Goodbye;
                        None
                    }
                    AfterClose::ToPerson => {
                        out.end = End::FallbackDial;
                        None
                    }
                    AfterClose::Transferred(t) => Some(t),
                },
            }
        }
        Ending::Transfer(t) => {
            // The provider answers the transfer request before it moves the call off the
            // stream.
            tokio::time::sleep(REDIRECT_DELAY).await;
            stop_stream(&cmds, wire, out).await;
            Some(t?)
        }
        Ending::CutOff => {
            stop_stream(&cmds, wire, out).await;
            out.end = End::CutOff;
            None
        }
        Ending::Timeout => {
            stop_stream(&cmds, wire, out).await;
            return Err(CallError::Timeout(ctx.call_timeout.as_secs()));
        }
    };
    if let Some(t) = transferred {
        settle_transfer(fixture, out, &t, &turn_ends)?;
    }
    Ok(())
}

/// The caller's side ends the stream as the provider does once the call leaves it.
async fn stop_stream(cmds: &mpsc::Sender<Cmd>, wire: JoinHandle<WireEnd>, out: &mut CallOutcome) {
    let _ = cmds.send(Cmd::Stop).await;
    if let Ok(Ok(end)) = tokio::time::timeout(Duration::from_secs(5), wire).await {
        out.absorb(end.stats);
    }
}

/// Records a transfer and its latency against the fixture's trigger turn.
fn settle_transfer(
    fixture: &Fixture,
    out: &mut CallOutcome,
    t: &Transfer,
    turn_ends: &[Option<Instant>],
) -> Result<(), CallError> {
    if !t.to_person {
        return Err(CallError::NotATransfer(t.what.clone()));
    }
    out.end = End::Transferred;
    out.transfer = Some(t.what.clone());
    let trigger_end = fixture
        .expect
        .trigger_turn
        .and_then(|i| turn_ends.get(i).copied().flatten());
    match trigger_end {
        Some(end) => {
            out.decision_latency_ms = Some(signed_ms(t.at, end));
            out.trigger_end = Some(end);
        }
        None => out.early = fixture.expect.trigger_turn.is_some(),
    }
    Ok(())
}

/// Reads the stored record (and the card the webhook got) for overload and the queue.
async fn inspect_handoff(ctx: &Ctx, fixture: &Fixture, out: &mut CallOutcome) {
    let url = format!("{}/api/calls/{}", ctx.base, out.call_sid);
    let record: Value = match ctx.http.get(&url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let card = ctx.cloud.twilio.card(&out.call_sid);
    let card = card.as_ref().unwrap_or(&record["handoff"]);
    out.overload |= cites_overload(&record, card);
    out.held = decisions(&record).iter().any(|d| d["decision"] == "hold");
    out.transcript_ms = transcript_delay(&record, out);
    out.queue = card["queue"].as_str().map(str::to_string);
    let wanted = fixture
        .expect
        .queue
        .as_ref()
        .map(|q| q.to_vec())
        .unwrap_or_default();
    if let Some(q) = &out.queue
        && !wanted.is_empty()
        && !wanted.contains(q)
    {
        out.unexpected = Some(format!("queue {q}, expected {}", wanted.join("/")));
    }
}

/// `a − b` in ms, negative when `a` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1000.0
    } else {
        -((b - a).as_secs_f64() * 1000.0)
    }
}

fn decisions(record: &Value) -> &[Value] {
    record["decisions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
}

/// When warmline had the transcript that led to the transfer (its last caller line before
/// the transfer decision), relative to the end of the trigger turn's audio.
fn transcript_delay(record: &Value, out: &CallOutcome) -> Option<f64> {
    let (connected, trigger_end) = (out.connected?, out.trigger_end?);
    let transfer_ms = decisions(record)
        .iter()
        .find(|d| d["decision"] == "transfer")?["t_ms"]
        .as_u64()?;
    let heard_ms = record["transcript"]
        .as_array()?
        .iter()
        .filter(|l| l["speaker"] == "caller")
        .filter_map(|l| l["t_ms"].as_u64())
        .filter(|&t| t <= transfer_ms)
        .max()?;
    Some(signed_ms(
        connected + Duration::from_millis(heard_ms),
        trigger_end,
    ))
}

/// The call was handed over because warmline was at capacity (its decisions say so).
fn cites_overload(record: &Value, card: &Value) -> bool {
    let decided = decisions(record).iter().any(|d| {
        let detail = d["detail"].as_str().unwrap_or_default();
        d["decision"] == "overload"
            || (d["decision"] == "stt_failure" && detail.contains("capacity"))
    });
    decided
        || card["reason"]
            .as_str()
            .is_some_and(|r| r.contains("overload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("ws://localhost:9/twilio/media"));
        assert!(!is_loopback("http://10.0.0.5:8080"));
        assert!(!is_loopback("https://example.com"));
        assert!(!is_loopback("http://127.0.0.1.example.com"));
    }
}

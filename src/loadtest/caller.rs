//! The simulated caller: a script that speaks a fixture's turns when a person would (after
//! warmline's prompt has played, or over it for a barge-in), and a wire that keeps the
//! provider's real-time media clock — a 20 ms frame always, silence when not talking — and
//! models what is playing to the caller, so marks come back when their audio has been heard
//! and a clear drops what was not. The wire speaks any provider through its
//! [`MediaClient`]; only what that provider does differently (a clear that returns marks or
//! not, audio sent all the time or only when talking) changes its behaviour.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::fakes::{LineEvent, MediaClient, MediaLink, lock};
use crate::audio::ulaw;
use crate::replay::fixture::{Act, Fixture};

const FRAME_BYTES: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
/// μ-law digital silence: what a provider streams while the caller says nothing.
pub(super) const SILENCE: [u8; FRAME_BYTES] = [0xFF; FRAME_BYTES];
/// Outbound audio louder than this (mean |sample|, 16-bit) is warmline talking; the
/// simulator's threshold, so near-silent padding does not count as a prompt still playing.
const VOICED_MEAN_ABS: u32 = 24;
// The caller's patience, as in the Twilio simulator.
const GREETING_TIMEOUT: Duration = Duration::from_secs(6);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const PROMPT_IDLE: Duration = Duration::from_millis(300);
/// Where warmline streams silence between sentences in real time (AudioSocket), a pause of
/// up to 340 ms inside a prompt arrives as silence, so the caller waits longer before
/// deciding the prompt is over.
const PROMPT_IDLE_CONTINUOUS: Duration = Duration::from_millis(600);
const MAX_PROMPT: Duration = Duration::from_secs(45);
const DURING_PROMPT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// What the caller has heard of warmline so far (the wire updates it, the script reads it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Heard {
    /// Arrival of the last non-silent outbound media.
    last_voiced_rx: Option<Instant>,
    /// When everything sent so far, pauses included, will have finished playing (with
    /// continuous audio: everything up to the last voiced frame).
    played_until: Option<Instant>,
    idle_after: Duration,
}

impl Heard {
    pub(super) fn new(continuous_audio: bool) -> Heard {
        Heard {
            last_voiced_rx: None,
            played_until: None,
            idle_after: if continuous_audio {
                PROMPT_IDLE_CONTINUOUS
            } else {
                PROMPT_IDLE
            },
        }
    }

    fn spoke_after(&self, t: Instant) -> bool {
        self.last_voiced_rx.is_some_and(|r| r > t)
    }

    /// Warmline's prompt has finished playing and nothing new has come for a moment.
    /// Unlike the simulator (which waits for the end of the last *voiced* audio), the pauses
    /// between a prompt's sentences (up to 340 ms, longer than `PROMPT_IDLE`) must not count
    /// as the end, or the caller talks over the rest of the prompt and triggers a barge-in.
    fn idle(&self, now: Instant) -> bool {
        self.played_until.is_none_or(|e| now >= e)
            && self
                .last_voiced_rx
                .is_none_or(|r| now.duration_since(r) >= self.idle_after)
    }
}

/// The caller's turns, timed like the Twilio simulator; `ends[i]` is when turn `i`'s last
/// frame (or key) went out. Never returns: after the last turn the line stays open until
/// warmline transfers or hangs up (the select in the call's driver ends the call).
pub(super) async fn script(
    fixture: &Fixture,
    heard: &Mutex<Heard>,
    cmds: &mpsc::Sender<Cmd>,
    ends: &mut [Option<Instant>],
    connected: Instant,
) -> Infallible {
    let mut since = connected;
    for (i, turn) in fixture.turns.iter().enumerate() {
        let patience = if i == 0 {
            GREETING_TIMEOUT
        } else {
            REPLY_TIMEOUT
        };
        if turn.during_prompt {
            // Barge-in: start talking a second into warmline's prompt.
            if wait_reply(heard, since, patience, true).await {
                tokio::time::sleep(DURING_PROMPT).await;
            }
        } else if wait_reply(heard, since, patience, false).await || i == 0 {
            tokio::time::sleep(Duration::from_millis(turn.pause_before_ms)).await;
        }
        let Some(end) = act(cmds, &turn.act).await else {
            break; // the wire is gone; the call's driver sees it end
        };
        ends[i] = Some(end);
        since = end;
    }
    std::future::pending().await
}

/// Waits for warmline to start talking after `after` and, unless `started_only`, to finish.
/// False if it said nothing within `patience` (the caller then goes on anyway).
async fn wait_reply(
    heard: &Mutex<Heard>,
    after: Instant,
    patience: Duration,
    started_only: bool,
) -> bool {
    while !lock(heard).spoke_after(after) {
        if after.elapsed() > patience {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    let began = Instant::now();
    while !started_only && !lock(heard).idle(Instant::now()) && began.elapsed() < MAX_PROMPT {
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Has the wire speak or press; returns when the last frame or the key went out.
async fn act(cmds: &mpsc::Sender<Cmd>, act: &Act) -> Option<Instant> {
    let (done, finished) = oneshot::channel();
    let cmd = match act {
        Act::Speak { ulaw, .. } => Cmd::Speak(Arc::from(ulaw.as_slice()), done),
        Act::Press(digit) => Cmd::Press(*digit, done),
    };
    cmds.send(cmd).await.ok()?;
    finished.await.ok()
}

pub(super) enum Cmd {
    Speak(Arc<[u8]>, oneshot::Sender<Instant>),
    Press(char, oneshot::Sender<Instant>),
    /// The provider ends the stream (its `stop` where it has one), then the connection.
    Stop,
}

/// How well the caller's 20 ms clock kept time (a late clock delays endpointing too).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct WireStats {
    pub(super) frames: u64,
    pub(super) late: u64,
    pub(super) worst_late: Duration,
}

/// How the media connection ended.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct WireEnd {
    pub(super) stats: WireStats,
    /// warmline ended the connection on purpose (AudioSocket's hang-up frame), at this time.
    pub(super) hung_up_at: Option<Instant>,
    /// Whether warmline ever said anything (a line that refuses a call hangs up first).
    pub(super) heard_voice: bool,
}

struct Talk {
    audio: Arc<[u8]>,
    at: usize,
    done: oneshot::Sender<Instant>,
}

/// A media connection as the provider runs it: a real-time frame clock, and a model of what
/// is playing to the caller so marks come back when their audio has been heard.
pub(super) struct Wire {
    link: MediaLink,
    client: MediaClient,
    heard: Arc<Mutex<Heard>>,
    playback_end: Instant,
    marks: VecDeque<(String, Instant)>,
    talk: Option<Talk>,
    end: WireEnd,
}

impl Wire {
    pub(super) fn new(link: MediaLink, client: MediaClient, heard: Arc<Mutex<Heard>>) -> Wire {
        Wire {
            link,
            client,
            heard,
            playback_end: Instant::now(),
            marks: VecDeque::new(),
            talk: None,
            end: WireEnd::default(),
        }
    }

    /// Runs until warmline closes the connection or the caller's side stops it.
    pub(super) async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) -> WireEnd {
        for hello in self.client.hello() {
            if !self.link.send(hello).await {
                return self.end;
            }
        }
        // Burst: a clock that fell behind catches up, as a jittery network would deliver.
        let mut tick = tokio::time::interval(FRAME_TIME);
        loop {
            let alive = tokio::select! {
                due = tick.tick() => self.on_tick(due.into_std()).await,
                frame = self.link.recv() => match frame {
                    Some(frame) => self.on_frame(&frame).await,
                    None => false,
                },
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Stop) | None => break,
                    Some(cmd) => self.on_cmd(cmd).await,
                },
            };
            if !alive {
                return self.end;
            }
        }
        if let Some(stop) = self.client.stop() {
            let _ = self.link.send(stop).await;
        }
        self.link.close().await;
        self.end
    }

    /// One frame of the caller's line, and any marks whose audio has now played.
    async fn on_tick(&mut self, due: Instant) -> bool {
        let late = due.elapsed();
        let stats = &mut self.end.stats;
        stats.frames += 1;
        if late > FRAME_TIME {
            stats.late += 1;
        }
        stats.worst_late = stats.worst_late.max(late);
        let now = Instant::now();
        while self.marks.front().is_some_and(|(_, at)| *at <= now) {
            if let Some((name, _)) = self.marks.pop_front()
                && !self.echo_mark(&name).await
            {
                return false;
            }
        }
        let (frame, last) = match &mut self.talk {
            Some(t) => {
                let frame = t.audio[t.at..(t.at + FRAME_BYTES).min(t.audio.len())].to_vec();
                t.at += FRAME_BYTES;
                (frame, t.at >= t.audio.len())
            }
            None => (SILENCE.to_vec(), false),
        };
        let frame = self.client.audio(&frame);
        if !self.link.send(frame).await {
            return false;
        }
        if last && let Some(t) = self.talk.take() {
            let _ = t.done.send(Instant::now());
        }
        true
    }

    async fn echo_mark(&mut self, name: &str) -> bool {
        match self.client.played(name) {
            Some(frame) => self.link.send(frame).await,
            None => true,
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Speak(audio, done) => self.talk = Some(Talk { audio, at: 0, done }),
            Cmd::Press(digit, done) => {
                let frame = self.client.dtmf(digit);
                if !self.link.send(frame).await {
                    return false;
                }
                let _ = done.send(Instant::now());
            }
            Cmd::Stop => {}
        }
        true
    }

    /// False once warmline has ended the connection.
    async fn on_frame(&mut self, frame: &crate::telephony::media::Frame) -> bool {
        let now = Instant::now();
        match self.client.read(frame) {
            LineEvent::Audio(ulaw) => self.on_media(&ulaw, now),
            LineEvent::Mark(name) => self.marks.push_back((name, self.playback_end.max(now))),
            LineEvent::Clear => return self.on_clear(now).await,
            LineEvent::HangUp => {
                self.end.hung_up_at = Some(now);
                return false;
            }
            LineEvent::Other(_) => {}
        }
        true
    }

    /// Queues outbound audio behind what is already playing.
    fn on_media(&mut self, payload: &[u8], now: Instant) {
        let start = self.playback_end.max(now);
        self.playback_end = start + Duration::from_micros(payload.len() as u64 * 125);
        let is_voiced = voiced(payload);
        self.end.heard_voice |= is_voiced;
        let mut h = lock(&self.heard);
        if is_voiced || !self.client.continuous_audio() {
            h.played_until = Some(self.playback_end);
        }
        if is_voiced {
            h.last_voiced_rx = Some(now);
        }
    }

    /// The provider drops unplayed audio; Twilio and Telnyx return every pending mark at
    /// once, Plivo only acknowledges the clear.
    async fn on_clear(&mut self, now: Instant) -> bool {
        self.playback_end = now;
        lock(&self.heard).played_until = Some(now);
        let dropped = std::mem::take(&mut self.marks);
        if self.client.clear_returns_marks() {
            for (name, _) in dropped {
                if !self.echo_mark(&name).await {
                    return false;
                }
            }
        }
        match self.client.cleared() {
            Some(ack) => self.link.send(ack).await,
            None => true,
        }
    }
}

fn voiced(payload: &[u8]) -> bool {
    if payload.is_empty() {
        return false;
    }
    let total: u32 = payload
        .iter()
        .map(|&b| ulaw::decode(b).unsigned_abs() as u32)
        .sum();
    total / payload.len() as u32 > VOICED_MEAN_ABS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voiced_ignores_digital_silence() {
        assert!(!voiced(&SILENCE));
        assert!(voiced(&[0x10; FRAME_BYTES]));
    }

    #[test]
    fn a_caller_on_continuous_audio_waits_out_a_pause_inside_a_prompt() {
        let t0 = Instant::now();
        let mut h = Heard::new(true);
        h.last_voiced_rx = Some(t0);
        h.played_until = Some(t0 + Duration::from_millis(80));
        // 400 ms of silence (a pause between sentences) is not the end of the prompt ...
        assert!(!h.idle(t0 + Duration::from_millis(400)));
        assert!(h.idle(t0 + Duration::from_millis(700)));
        // ... where audio only comes while warmline talks, 300 ms of nothing is.
        let mut h = Heard::new(false);
        h.last_voiced_rx = Some(t0);
        h.played_until = Some(t0 + Duration::from_millis(80));
        assert!(h.idle(t0 + Duration::from_millis(400)));
    }
}

//! Plays a fixture call through the engine on a virtual clock, the way the Twilio simulator
//! plays it over the wire: the caller waits for warmline's prompt to finish, pauses, speaks;
//! prompts "play" for as long as their audio lasts and their marks come back when they end.
//!
//! Speech-to-text runs for real; the virtual clock does not advance while it runs, so decisions
//! and timing are deterministic and the replay runs faster than real time.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};

use super::fixture::{Act, Fixture};
use crate::audio::{FRAME_MS, FRAME_SAMPLES_8K};
use crate::call::Playbook;
use crate::call::{Action, CallInfo, DecisionKind, Engine, Event, Millis, Record, TranscriptLine};
use crate::handoff::Handoff;
use crate::stt::Transcriber;

/// Like the Twilio simulator: speak anyway when warmline says nothing for this long.
const REPLY_TIMEOUT_MS: Millis = 10_000;
/// A prompt counts as finished once no audio has played for this long.
const PROMPT_IDLE_MS: Millis = 300;
/// Barge-in turns start this far into warmline's reply.
const DURING_PROMPT_MS: Millis = 1_000;
/// After the last turn the caller waits this long for warmline, then hangs up.
const HANGUP_AFTER_MS: Millis = 8_000;
/// Safety stop for a call that never ends.
const MAX_CALL_MS: Millis = 300_000;

/// How a replayed call ended.
#[derive(Debug, Clone)]
pub enum Ending {
    Transferred(Box<Handoff>),
    /// warmline hung up (after a goodbye).
    HungUp,
    /// The caller gave up waiting.
    CallerHungUp,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    pub ended_at: Millis,
    pub turn_start: Vec<Option<Millis>>,
    pub turn_end: Vec<Option<Millis>>,
    pub transcript: Vec<TranscriptLine>,
    /// `clear` actions sent (barge-ins).
    pub clears: u32,
    /// The engine's decisions (`barge_in`, `silence`, `second_pass`, …) with their times.
    pub decisions: Vec<(Millis, DecisionKind)>,
    /// Wall-clock time spent in speech-to-text.
    pub stt_wall_ms: u64,
    pub stt_calls: u32,
}

impl Outcome {
    pub fn handoff(&self) -> Option<&Handoff> {
        match &self.ending {
            Ending::Transferred(h) => Some(h),
            _ => None,
        }
    }

    /// The last turn that had finished when the call ended.
    pub fn after_turn(&self) -> Option<usize> {
        self.turn_end
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some_and(|e| e <= self.ended_at))
            .map(|(i, _)| i)
            .next_back()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    /// Waiting for warmline to start talking after `since` (then for it to finish);
    /// `heard` is when its reply was first heard.
    AwaitReply {
        since: Millis,
        heard: Option<Millis>,
    },
    Pause {
        until: Millis,
    },
    Speaking {
        frame: usize,
    },
    Linger {
        until: Millis,
    },
}

struct Playback {
    /// Marks with the virtual time their audio finishes.
    marks: Vec<(String, Millis)>,
    end: Millis,
}

/// Replays one fixture. `handoff_id` and the start time are fixed so outcomes are repeatable.
pub fn run(
    fixture: &Fixture,
    book: Arc<Playbook>,
    stt: &dyn Transcriber,
) -> Result<Outcome, String> {
    let info = CallInfo {
        call_sid: format!("CA-replay-{}", fixture.id),
        from: "+15550001234".into(),
        to: "+15550009000".into(),
        started_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
            .single()
            .unwrap_or_else(Utc::now),
        handoff_id: format!("replay-{}", fixture.id),
    };
    // A recorded call opened with the greeting its caller heard.
    let book = match &fixture.greeting {
        Some(g) if *g != book.dialplan.greeting => crate::recording::with_greeting(&book, g)
            .ok_or_else(|| format!("the fixture's greeting prompt {g:?} does not exist"))?,
        _ => book,
    };
    let mut engine = Engine::new(info, book).map_err(|e| e.to_string())?;
    let n = fixture.turns.len();
    let mut out = Outcome {
        ending: Ending::CallerHungUp,
        ended_at: 0,
        turn_start: vec![None; n],
        turn_end: vec![None; n],
        transcript: Vec::new(),
        clears: 0,
        decisions: Vec::new(),
        stt_wall_ms: 0,
        stt_calls: 0,
    };
    let mut play = Playback {
        marks: Vec::new(),
        end: 0,
    };
    let mut now: Millis = 0;
    let mut turn = 0usize;
    let mut script = Script::AwaitReply {
        since: 0,
        heard: None,
    };
    let silence = [0xFFu8; FRAME_SAMPLES_8K];

    let mut pending = engine.start(now);
    loop {
        // Carry out what the engine asked for; transcriptions feed straight back in.
        while let Some(action) = pending.pop() {
            match action {
                Action::Play { audio, mark, .. } => {
                    let start = play.end.max(now);
                    play.end = start + audio.len() as Millis / 8;
                    play.marks.push((mark, play.end));
                }
                Action::Clear => {
                    out.clears += 1;
                    play.end = now;
                    for (mark, _) in std::mem::take(&mut play.marks) {
                        let mut more = engine.feed(Event::Mark(mark), now);
                        more.reverse();
                        pending.extend(more);
                    }
                }
                Action::Transcribe {
                    utterance,
                    samples,
                    initial_prompt,
                    mode,
                    ..
                } => {
                    let t0 = Instant::now();
                    let result = stt.transcribe_as(&samples, &initial_prompt, mode);
                    out.stt_wall_ms += t0.elapsed().as_millis() as u64;
                    out.stt_calls += 1;
                    let mut more = engine.feed(Event::Transcribed { utterance, result }, now);
                    more.reverse();
                    pending.extend(more);
                }
                Action::Transfer(h) => out.ending = Ending::Transferred(h),
                Action::Hangup => out.ending = Ending::HungUp,
                // Replay transcribes each request as it is made, so none is ever still running.
                Action::CancelTranscription { .. } => {}
                Action::Record(Record::Decision { t_ms, decision, .. }) => {
                    out.decisions.push((t_ms, decision));
                }
                Action::Record(_) => {}
            }
        }
        if engine.is_done() || now > MAX_CALL_MS {
            out.ended_at = now;
            break;
        }

        // The caller's side of this 20 ms step.
        let mut frame: &[u8] = &silence;
        // A turn with its own start time (a recorded call) waits for it, not for warmline.
        if let Some(at) = fixture.turns.get(turn).and_then(|t| t.at_ms)
            && matches!(script, Script::AwaitReply { .. } | Script::Pause { .. })
        {
            script = Script::Pause { until: at };
        }
        match script {
            Script::AwaitReply { since, heard } => {
                let talking = play.end > since;
                let heard = heard.or(talking.then_some(now));
                script = Script::AwaitReply { since, heard };
                if turn >= n {
                    script = Script::Linger {
                        until: now + HANGUP_AFTER_MS,
                    };
                } else if let Some(h) = heard {
                    if fixture.turns[turn].during_prompt {
                        if now >= h + DURING_PROMPT_MS {
                            script = Script::Pause { until: now };
                        }
                    } else if now >= play.end + PROMPT_IDLE_MS {
                        script = Script::Pause {
                            until: now + fixture.turns[turn].pause_before_ms,
                        };
                    }
                } else if now.saturating_sub(since) >= REPLY_TIMEOUT_MS {
                    script = Script::Pause { until: now };
                }
            }
            Script::Pause { until } if now >= until => match &fixture.turns[turn].act {
                Act::Press(digit) => {
                    out.turn_start[turn] = Some(now);
                    out.turn_end[turn] = Some(now);
                    let mut more = engine.feed(Event::Dtmf(*digit), now);
                    more.reverse();
                    pending = more;
                    turn += 1;
                    script = Script::AwaitReply {
                        since: now,
                        heard: None,
                    };
                    continue;
                }
                Act::Speak { .. } => {
                    out.turn_start[turn] = Some(now);
                    script = Script::Speaking { frame: 0 };
                }
            },
            Script::Linger { until } if now >= until => {
                engine.feed(Event::Hangup, now);
                out.ended_at = now;
                break;
            }
            _ => {}
        }
        if let Script::Speaking { frame: k } = script
            && let Act::Speak { ulaw, .. } = &fixture.turns[turn].act
        {
            let at = k * FRAME_SAMPLES_8K;
            frame = &ulaw[at..at + FRAME_SAMPLES_8K];
            if at + FRAME_SAMPLES_8K >= ulaw.len() {
                out.turn_end[turn] = Some(now + FRAME_MS);
                turn += 1;
                script = Script::AwaitReply {
                    since: now + FRAME_MS,
                    heard: None,
                };
            } else {
                script = Script::Speaking { frame: k + 1 };
            }
        }

        let mut actions = engine.feed(Event::Audio(frame), now);
        now += FRAME_MS;
        actions.extend(engine.feed(Event::Tick, now));
        // Marks whose audio has finished playing come back from the "provider".
        let (done, waiting): (Vec<_>, Vec<_>) =
            play.marks.drain(..).partition(|(_, end)| *end <= now);
        play.marks = waiting;
        for (mark, _) in done {
            actions.extend(engine.feed(Event::Mark(mark), now));
        }
        actions.reverse();
        pending = actions;
    }
    out.transcript = engine.transcript().to_vec();
    Ok(out)
}

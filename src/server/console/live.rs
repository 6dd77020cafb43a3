//! The live board's feed: every record operation, as it is stored, for the console.
//!
//! The record writer thread is the one place that sees every call event in order, after the
//! store has it; it publishes here. Publishing and snapshotting both happen on that thread,
//! so a console that subscribes while taking a snapshot misses nothing and sees nothing
//! twice. The tone and person-request counts are worked out here from the stored lines with
//! the engine's own analysis, so the media driver carries nothing extra for the console.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::analysis::{agent_request, sentiment, tone::ToneTracker};
use crate::call::{DecisionKind, Outcome, Record, Speaker, TransferStatus};
use crate::server::records::Op;
use crate::store::Store;

/// Events buffered per console; one that falls further behind is told to reload.
const CHANNEL: usize = 1024;
/// A driver that never sends `Finish` must not grow the board without end.
const MAX_LIVE: usize = 4096;

/// One event on the board, as sent to browsers.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    pub seq: u64,
    pub call_sid: String,
    #[serde(flatten)]
    pub kind: LiveKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveKind {
    Begin {
        from: String,
        to: String,
        started_at: String,
        live: LiveView,
    },
    Line {
        line: Value,
        live: LiveView,
    },
    Decision {
        t_ms: u64,
        decision: DecisionKind,
        detail: String,
        live: LiveView,
    },
    Handoff {
        handoff_id: String,
        queue: String,
        reason: String,
        priority: String,
        live: LiveView,
    },
    Transfer {
        status: TransferStatus,
        detail: String,
    },
    Finish {
        outcome: Outcome,
        ended_at: String,
    },
}

/// What the board shows beside the transcript.
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    /// greeting, listening, answering, transferring or ending.
    pub state: &'static str,
    /// Tone per caller turn, -1 (angry) ..= 1, oldest first.
    pub tone: Vec<f32>,
    pub tone_label: Option<&'static str>,
    pub tone_trend: &'static str,
    pub person_requests: u32,
}

#[derive(Default)]
struct LiveCall {
    state: &'static str,
    tone: ToneTracker,
    requests: u32,
    handoffs: Vec<String>,
    /// Arrival order, to drop the oldest when the board is full.
    order: u64,
}

impl LiveCall {
    fn view(&self) -> LiveView {
        LiveView {
            state: self.state,
            tone: self.tone.history().to_vec(),
            tone_label: self.tone.last_label().map(|l| l.as_str()),
            tone_trend: self.tone.trend().as_str(),
            person_requests: self.requests,
        }
    }
}

#[derive(Default)]
struct Board {
    seq: u64,
    calls: HashMap<String, LiveCall>,
}

/// What a console loads before following the feed.
pub struct LiveSnapshot {
    /// Each live call's stored record (`GET /api/calls/{sid}` shape) plus `live`.
    pub calls: Vec<Value>,
    pub events: broadcast::Receiver<Arc<LiveEvent>>,
}

pub struct LiveFeed {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    board: Mutex<Board>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed {
            tx: broadcast::channel(CHANNEL).0,
            board: Mutex::new(Board::default()),
        }
    }
}

impl LiveFeed {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds an operation into the board; the event for consoles is sent with [`Self::send`]
    /// once the store has the operation. Both run on the record writer thread.
    pub fn fold(&self, op: &Op) -> Option<Arc<LiveEvent>> {
        let mut board = self.board();
        let (call_sid, kind) = board.fold(op)?;
        board.seq += 1;
        Some(Arc::new(LiveEvent {
            seq: board.seq,
            call_sid,
            kind,
        }))
    }

    pub fn send(&self, event: Arc<LiveEvent>) {
        // No console listening is the common case, not an error.
        let _ = self.tx.send(event);
    }

    /// The live calls as stored, and a subscription that starts right after them. Must run
    /// on the record writer thread (between operations) for the two to line up exactly.
    pub fn snapshot(&self, store: &Store) -> LiveSnapshot {
        let board = self.board();
        let events = self.tx.subscribe();
        let mut live: Vec<(&String, &LiveCall)> = board.calls.iter().collect();
        live.sort_by_key(|(_, c)| c.order);
        let calls = live
            .into_iter()
            .filter_map(|(sid, call)| {
                let mut record = match store.get_call(sid) {
                    Ok(Some(r)) => r,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(call_sid = %sid, error = %e, "live board: cannot read a call");
                        return None;
                    }
                };
                record["live"] = serde_json::to_value(call.view()).unwrap_or(Value::Null);
                Some(record)
            })
            .collect();
        LiveSnapshot { calls, events }
    }

    pub fn live_calls(&self) -> usize {
        self.board().calls.len()
    }
}

impl Board {
    fn fold(&mut self, op: &Op) -> Option<(String, LiveKind)> {
        match op {
            Op::Begin {
                call_sid,
                from,
                to,
                started_at,
            } => {
                if self.calls.len() >= MAX_LIVE {
                    let oldest = self
                        .calls
                        .iter()
                        .min_by_key(|(_, c)| c.order)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        self.calls.remove(&k);
                    }
                }
                let order = self.seq;
                let call = self.calls.entry(call_sid.clone()).or_default();
                call.order = order;
                call.state = "greeting";
                Some((
                    call_sid.clone(),
                    LiveKind::Begin {
                        from: from.clone(),
                        to: to.clone(),
                        started_at: started_at.clone(),
                        live: call.view(),
                    },
                ))
            }
            Op::Record { call_sid, record } => {
                let call = self.calls.get_mut(call_sid)?;
                let kind = match record {
                    Record::Line(line) => {
                        match line.speaker {
                            Speaker::Caller => {
                                let lexical = sentiment::lexical(&line.text);
                                call.tone.observe(&lexical, line.prosody.as_ref());
                                let asked = agent_request::detect(&line.text);
                                if !asked.declined {
                                    call.requests += asked.count;
                                }
                                call.state = "listening";
                            }
                            Speaker::System => {
                                call.state = match line.prompt.as_deref() {
                                    Some("greeting") => "greeting",
                                    _ if call.state == "transferring" => "transferring",
                                    _ => "answering",
                                };
                            }
                        }
                        LiveKind::Line {
                            line: serde_json::to_value(line).unwrap_or(Value::Null),
                            live: call.view(),
                        }
                    }
                    Record::Decision {
                        t_ms,
                        decision,
                        detail,
                    } => {
                        call.state = match decision {
                            DecisionKind::Escalate
                            | DecisionKind::Fault
                            | DecisionKind::Overload => "transferring",
                            DecisionKind::Hangup | DecisionKind::CallerHangup => "ending",
                            _ => call.state,
                        };
                        LiveKind::Decision {
                            t_ms: *t_ms,
                            decision: *decision,
                            detail: detail.clone(),
                            live: call.view(),
                        }
                    }
                    Record::Handoff { id, card } => {
                        call.state = "transferring";
                        call.handoffs.push(id.clone());
                        LiveKind::Handoff {
                            handoff_id: id.clone(),
                            queue: card.queue.clone(),
                            reason: card.reason.clone(),
                            priority: card.priority.as_str().to_string(),
                            live: call.view(),
                        }
                    }
                };
                Some((call_sid.clone(), kind))
            }
            Op::TransferStatus {
                handoff_id,
                status,
                detail,
            } => {
                let sid = self
                    .calls
                    .iter()
                    .find(|(_, c)| c.handoffs.iter().any(|h| h == handoff_id))
                    .map(|(k, _)| k.clone())?;
                Some((
                    sid,
                    LiveKind::Transfer {
                        status: *status,
                        detail: detail.clone(),
                    },
                ))
            }
            Op::Finish {
                call_sid,
                outcome,
                ended_at,
            } => {
                self.calls.remove(call_sid);
                Some((
                    call_sid.clone(),
                    LiveKind::Finish {
                        outcome: *outcome,
                        ended_at: ended_at.clone(),
                    },
                ))
            }
            Op::Flush(_) | Op::Snapshot(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::call::TranscriptLine;
    use crate::metrics::Metrics;
    use crate::server::RecordWriter;

    fn line(t_ms: u64, speaker: Speaker, text: &str, prompt: Option<&str>) -> Op {
        Op::Record {
            call_sid: "CA1".into(),
            record: Record::Line(TranscriptLine {
                t_ms,
                speaker,
                text: text.into(),
                confidence: None,
                prompt: prompt.map(str::to_owned),
                prosody: None,
            }),
        }
    }

    fn kind(e: &LiveEvent) -> Value {
        serde_json::to_value(e).unwrap()
    }

    #[tokio::test]
    async fn snapshot_holds_the_call_so_far_and_the_feed_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writer = RecordWriter::spawn(store, Arc::new(Metrics::default()));
        writer.send(Op::Begin {
            call_sid: "CA1".into(),
            from: "+15550001111".into(),
            to: "+15550009000".into(),
            started_at: "2026-01-01T09:00:00+00:00".into(),
        });
        writer.send(line(
            0,
            Speaker::System,
            "Thanks for calling.",
            Some("greeting"),
        ));
        let mut snap = writer.live_snapshot().await.unwrap();
        assert_eq!(snap.calls.len(), 1);
        let call = &snap.calls[0];
        assert_eq!(call["from"], "+15550001111");
        assert_eq!(call["transcript"].as_array().unwrap().len(), 1);
        assert_eq!(call["live"]["state"], "greeting");

        writer.send(line(
            4000,
            Speaker::Caller,
            "I am furious. Agent. Get me a real person.",
            None,
        ));
        writer.send(Op::Record {
            call_sid: "CA1".into(),
            record: Record::Decision {
                t_ms: 4100,
                decision: DecisionKind::Escalate,
                detail: "asked".into(),
            },
        });
        writer.send(Op::Finish {
            call_sid: "CA1".into(),
            outcome: Outcome::Transferred,
            ended_at: "2026-01-01T09:00:05+00:00".into(),
        });
        // Exactly what came after the snapshot, in order.
        let said = kind(&snap.events.recv().await.unwrap());
        assert_eq!(said["type"], "line", "{said}");
        assert_eq!(said["line"]["speaker"], "caller");
        assert_eq!(said["live"]["state"], "listening");
        assert!(
            said["live"]["person_requests"].as_u64().unwrap() >= 2,
            "{said}"
        );
        assert!(said["live"]["tone"][0].as_f64().unwrap() < 0.0, "{said}");
        let decided = kind(&snap.events.recv().await.unwrap());
        assert_eq!(decided["live"]["state"], "transferring", "{decided}");
        assert_eq!(decided["decision"], "escalate", "{decided}");
        let finished = kind(&snap.events.recv().await.unwrap());
        assert_eq!(finished["type"], "finish");
        assert_eq!(finished["outcome"], "transferred", "{finished}");
        assert_eq!(writer.live().live_calls(), 0);
        assert!(writer.live_snapshot().await.unwrap().calls.is_empty());
    }

    #[test]
    fn a_transfer_event_carries_the_status_string_browsers_read() {
        let event = LiveEvent {
            seq: 7,
            call_sid: "CA1".into(),
            kind: LiveKind::Transfer {
                status: TransferStatus::Failed,
                detail: "exhausted".into(),
            },
        };
        assert_eq!(
            kind(&event),
            serde_json::json!({
                "seq": 7, "call_sid": "CA1", "type": "transfer",
                "status": "failed", "detail": "exhausted",
            })
        );
    }

    #[test]
    fn events_for_unknown_calls_and_handoffs_are_not_published() {
        let feed = LiveFeed::default();
        assert!(
            feed.fold(&line(0, Speaker::Caller, "hello", None))
                .is_none()
        );
        assert!(
            feed.fold(&Op::TransferStatus {
                handoff_id: "h1".into(),
                status: TransferStatus::Accepted,
                detail: String::new(),
            })
            .is_none()
        );
    }
}

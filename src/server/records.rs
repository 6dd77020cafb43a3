//! Writes call records in the order they happened, off the async runtime.
//!
//! One writer thread owns the ordering: call tasks hand it operations through a channel and
//! never block on SQLite. Turns are stored before the engine's decision is acted on (the
//! operation is queued first), and a write error is logged, never fatal for the call.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use super::console::live::{LiveFeed, LiveSnapshot};
use crate::call::{Record, Speaker};
use crate::metrics::Metrics;
use crate::store::Store;

pub enum Op {
    Begin {
        call_sid: String,
        from: String,
        to: String,
        started_at: String,
    },
    Record {
        call_sid: String,
        record: Record,
    },
    TransferStatus {
        handoff_id: String,
        status: &'static str,
        detail: String,
    },
    Finish {
        call_sid: String,
        outcome: String,
        ended_at: String,
    },
    Flush(mpsc::Sender<()>),
    /// The console's view of the live calls, taken between two writes.
    Snapshot(tokio::sync::oneshot::Sender<LiveSnapshot>),
}

#[derive(Clone)]
pub struct RecordWriter {
    tx: Arc<Mutex<mpsc::Sender<Op>>>,
    live: Arc<LiveFeed>,
}

impl RecordWriter {
    pub fn spawn(store: Store, metrics: Arc<Metrics>) -> RecordWriter {
        let (tx, rx) = mpsc::channel::<Op>();
        let live = Arc::new(LiveFeed::default());
        let feed = live.clone();
        thread::Builder::new()
            .name("warmline-records".into())
            .spawn(move || {
                for op in rx {
                    if let Op::Snapshot(reply) = op {
                        let _ = reply.send(feed.snapshot(&store));
                        continue;
                    }
                    // The console hears of an event only once the store holds it.
                    let event = feed.fold(&op);
                    if let Some(ok) = apply(&store, op) {
                        metrics.store_write(ok);
                    }
                    if let Some(event) = event {
                        feed.send(event);
                    }
                }
            })
            .expect("spawning the record writer thread");
        RecordWriter {
            tx: Arc::new(Mutex::new(tx)),
            live,
        }
    }

    /// The live calls as stored, and the feed from right after them; `None` if the writer
    /// is gone.
    pub async fn live_snapshot(&self) -> Option<LiveSnapshot> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Snapshot(reply));
        rx.await.ok()
    }

    pub fn live(&self) -> &LiveFeed {
        &self.live
    }

    pub fn send(&self, op: Op) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(op).is_err() {
            tracing::error!("record writer is gone; a call record was not stored");
        }
    }

    /// Waits until everything queued so far is written.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        self.send(Op::Flush(done_tx));
        let _ = done_rx.recv();
    }
}

/// Writes one operation; `Some(succeeded)` for writes, `None` for a flush.
fn apply(store: &Store, op: Op) -> Option<bool> {
    let result = match op {
        Op::Begin {
            call_sid,
            from,
            to,
            started_at,
        } => store.begin_call(&call_sid, &from, &to, &started_at),
        Op::Record { call_sid, record } => match record {
            Record::Line(l) => store.add_line(
                &call_sid,
                l.t_ms,
                match l.speaker {
                    Speaker::Caller => "caller",
                    Speaker::System => "system",
                },
                &l.text,
                l.confidence,
                l.prompt.as_deref(),
            ),
            Record::Decision {
                t_ms,
                decision,
                detail,
            } => store.add_decision(&call_sid, t_ms, &decision, &detail),
            Record::Handoff { id, card } => match serde_json::to_value(&*card) {
                Ok(mut json) => {
                    // The stream-ended fallback needs the id to point the agent whisper at it.
                    json["handoff_id"] = serde_json::Value::String(id.clone());
                    store.save_handoff(&id, &call_sid, &json, &card.spoken_summary)
                }
                Err(e) => {
                    tracing::error!(%call_sid, error = %e, "cannot serialize the context card");
                    Ok(())
                }
            },
        },
        Op::TransferStatus {
            handoff_id,
            status,
            detail,
        } => store.set_transfer_status(&handoff_id, status, &detail),
        Op::Finish {
            call_sid,
            outcome,
            ended_at,
        } => store.finish_call(&call_sid, &outcome, &ended_at),
        Op::Flush(done) => {
            let _ = done.send(());
            return None;
        }
        Op::Snapshot(_) => return None,
    };
    match result {
        Ok(()) => Some(true),
        Err(e) => {
            if let Some(suppressed) = STORE_LOG.permit() {
                tracing::error!(error = %e, suppressed, "storing a call record failed");
            }
            Some(false)
        }
    }
}

static STORE_LOG: super::log_limit::LogLimit = super::log_limit::LogLimit::new();

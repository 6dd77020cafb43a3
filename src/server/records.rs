//! Writes call records in the order they happened, off the async runtime.
//!
//! One writer thread owns the ordering: call tasks hand it operations through a channel and
//! never block on the database. Turns are stored before the engine's decision is acted on
//! (the operation is queued first), and a write error is logged, never fatal for the call.
//!
//! A write that fails for a reason that can pass (PostgreSQL restarting, a broken connection,
//! SQLite busy) is retried with backoff, in order, while later operations wait queued behind
//! it: an outage of a minute loses nothing. What waits is bounded ([`MAX_BACKLOG`]), each
//! operation is retried for at most [`RETRY_WINDOW`], every failed attempt counts in
//! `store_errors_total`, and
//! readers wait for the writer at most [`FLUSH_BOUND`], so a database that is gone never
//! holds up a call, a callback or shutdown for long.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::console::live::{LiveFeed, LiveSnapshot};
use crate::call::{Outcome, Record, Speaker, TransferStatus};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How long one operation is retried before it is given up (logged and counted). Operations
/// behind it wait meanwhile, so an outage shorter than this loses nothing.
const RETRY_WINDOW: Duration = Duration::from_secs(60);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Operations waiting for the writer; beyond this, new writes are dropped (and counted)
/// rather than letting a long outage grow memory without bound. At a few hundred bytes each
/// this is some megabytes, minutes of a full line's records.
pub const MAX_BACKLOG: usize = 50_000;
/// How long a reader waits for what was queued before it to be written.
pub const FLUSH_BOUND: Duration = Duration::from_secs(5);

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
        status: TransferStatus,
        detail: String,
    },
    Finish {
        call_sid: String,
        outcome: Outcome,
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
    /// Write operations queued and not yet done.
    backlog: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl RecordWriter {
    pub fn spawn(store: Store, metrics: Arc<Metrics>) -> RecordWriter {
        let (tx, rx) = mpsc::channel::<Op>();
        let live = Arc::new(LiveFeed::default());
        let backlog = Arc::new(AtomicUsize::new(0));
        let (feed, queued, m) = (live.clone(), backlog.clone(), metrics.clone());
        thread::Builder::new()
            .name("warmline-records".into())
            .spawn(move || {
                for op in rx {
                    match op {
                        Op::Snapshot(reply) => {
                            let _ = reply.send(feed.snapshot(&store));
                        }
                        Op::Flush(done) => {
                            let _ = done.send(());
                        }
                        op => {
                            // The console hears of an event only once the store holds it.
                            let event = feed.fold(&op);
                            write_with_retry(&store, &op, &m);
                            queued.fetch_sub(1, Ordering::Relaxed);
                            if let Some(event) = event {
                                feed.send(event);
                            }
                        }
                    }
                }
            })
            .expect("spawning the record writer thread");
        RecordWriter {
            tx: Arc::new(Mutex::new(tx)),
            live,
            backlog,
            metrics,
        }
    }

    /// The live calls as stored, and the feed from right after them; `None` if the writer
    /// is gone.
    pub async fn live_snapshot(&self) -> Option<LiveSnapshot> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Snapshot(reply));
        tokio::time::timeout(FLUSH_BOUND, rx).await.ok()?.ok()
    }

    pub fn live(&self) -> &LiveFeed {
        &self.live
    }

    /// Queues `op`; never blocks.
    pub fn send(&self, op: Op) {
        let write = !matches!(op, Op::Flush(_) | Op::Snapshot(_));
        if write && self.backlog.fetch_add(1, Ordering::Relaxed) >= MAX_BACKLOG {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            self.metrics.store_write(false);
            if let Some(suppressed) = BACKLOG_LOG.permit() {
                tracing::error!(
                    suppressed,
                    max = MAX_BACKLOG,
                    "call-record backlog full (is the database down?): a record was dropped"
                );
            }
            return;
        }
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(op).is_err() {
            if write {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
            }
            tracing::error!("record writer is gone; a call record was not stored");
        }
    }

    /// Write operations queued and not yet written (or given up).
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is written, at most [`FLUSH_BOUND`].
    pub fn flush(&self) -> bool {
        self.flush_within(FLUSH_BOUND)
    }

    /// Waits until everything queued so far is written, at most `bound`; `false` if the
    /// writer is still behind then (the database is slow or away) or gone.
    pub fn flush_within(&self, bound: Duration) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        self.send(Op::Flush(done_tx));
        done_rx.recv_timeout(bound).is_ok()
    }
}

/// Writes `op`, trying again with backoff while the failure may pass. Every failed attempt
/// counts; the last one is logged as lost.
fn write_with_retry(store: &Store, op: &Op, metrics: &Metrics) -> bool {
    let give_up_at = std::time::Instant::now() + RETRY_WINDOW;
    let mut delay = FIRST_RETRY;
    for attempt in 1u32.. {
        let Err(e) = apply(store, op) else {
            metrics.store_write(true);
            return true;
        };
        metrics.store_write(false);
        let retry = e.is_transient() && std::time::Instant::now() + delay < give_up_at;
        if let Some(suppressed) = STORE_LOG.permit() {
            if retry {
                tracing::warn!(error = %e, attempt, suppressed, "storing a call record failed; retrying");
            } else {
                tracing::error!(error = %e, attempt, suppressed, "storing a call record failed; given up");
            }
        }
        if !retry {
            break;
        }
        thread::sleep(delay);
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
    false
}

/// Writes one operation.
fn apply(store: &Store, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Begin {
            call_sid,
            from,
            to,
            started_at,
        } => store.begin_call(call_sid, from, to, started_at),
        Op::Record { call_sid, record } => match record {
            Record::Line(l) => store.add_line(
                call_sid,
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
            } => store.add_decision(call_sid, *t_ms, *decision, detail),
            Record::Handoff { id, card } => match serde_json::to_value(&**card) {
                Ok(mut json) => {
                    // The stream-ended fallback needs the id to point the agent whisper at it.
                    json["handoff_id"] = serde_json::Value::String(id.clone());
                    store.save_handoff(id, call_sid, &json, &card.spoken_summary)
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
        } => store.set_transfer_status(handoff_id, *status, detail),
        Op::Finish {
            call_sid,
            outcome,
            ended_at,
        } => store.finish_call(call_sid, *outcome, ended_at),
        Op::Flush(_) | Op::Snapshot(_) => Ok(()),
    }
}

static STORE_LOG: super::log_limit::LogLimit = super::log_limit::LogLimit::new();
static BACKLOG_LOG: super::log_limit::LogLimit = super::log_limit::LogLimit::new();

//! The shared backend: call records in PostgreSQL, so every instance reads what any wrote.
//!
//! The synchronous `postgres` client over a small `r2d2` pool. Why not `tokio-postgres`: the
//! store's callers already run on the blocking pool (`Store::run`, the record writer thread,
//! `spawn_blocking` reads), the SQLite backend needs that anyway, and one synchronous API for
//! both keeps the enum in `mod.rs` a plain dispatch. The cost: the sync client runs its own
//! small runtime per connection, so it must never be used — or dropped — on an async worker.
//!
//! Every network wait is bounded: connecting ([`CONNECT_TIMEOUT`]), waiting for a pooled
//! connection ([`CHECKOUT_TIMEOUT`]) and each statement ([`STATEMENT_TIMEOUT_MS`]), so a
//! database that hangs cannot hold a fail-open callback past the provider's webhook timeout.
//!
//! Schema: `migrations/postgres/NNNN_*.sql`, applied in order at startup inside one
//! transaction that holds an advisory lock, and recorded in `warmline_schema_migrations`.

use std::sync::Arc;
use std::time::Duration;

use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;
use serde_json::{Map, Value, json};

use super::{
    CallFilter, MAX_SEARCH_LIMIT, StoreError, as_f32_decimal, card_str, like_pattern, parse_opt,
    to_sql_int,
};
use crate::call::{DecisionKind, Outcome, TransferStatus};

/// `(version, sql)`, in order. Append only; a released file is never edited.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// Key of the advisory lock that serialises migrations across instances ("warmline").
const MIGRATION_LOCK: i64 = 0x7761_726d_6c69_6e65;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a store call waits for a pooled connection (or a new one) before failing.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);
const STATEMENT_TIMEOUT_MS: u32 = 5_000;
/// One record writer plus the reads of the API, console and fail-open callbacks.
const MAX_CONNECTIONS: u32 = 8;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

#[derive(Clone)]
pub struct PgStore {
    pool: Arc<PoolBox>,
    target: Arc<str>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish()
    }
}

/// Owns the pool. Each pooled client owns a small tokio runtime, and dropping a runtime on
/// an async worker panics; the last store handle may well be dropped there (a test's end, a
/// server's state), so the pool is let go on a thread of its own.
struct PoolBox(Option<Pool>);

impl Drop for PoolBox {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("warmline-pg-close".into())
                .spawn(move || drop(pool));
        }
    }
}

impl PgStore {
    /// Connects, migrates, and keeps a pool. Runs on a thread of its own: the sync client
    /// cannot start inside the async runtime that usually calls this (server startup).
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::BadUrl(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_options().is_none() {
            config.options(&format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        }
        if config.get_application_name().is_none() {
            config.application_name("warmline");
        }
        let target: Arc<str> = describe(&config).into();
        std::thread::scope(|s| {
            s.spawn(|| {
                // Migrating on a connection of its own makes an unreachable database fail
                // startup loudly rather than surface on the first call.
                let mut client = config.connect(NoTls)?;
                migrate(&mut client)?;
                drop(client);
                let pool = r2d2::Pool::builder()
                    .max_size(MAX_CONNECTIONS)
                    .min_idle(Some(1))
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    // After a database restart every idle connection is dead; checking on
                    // checkout (an empty query, one loopback/LAN round trip) swaps them for
                    // fresh ones instead of failing the next write on each.
                    .test_on_check_out(true)
                    .build_unchecked(PostgresConnectionManager::new(config.clone(), NoTls));
                Ok(PgStore {
                    pool: Arc::new(PoolBox(Some(pool))),
                    target: target.clone(),
                })
            })
            .join()
            .map_err(|_| StoreError::Task("postgres connect thread panicked".into()))?
        })
    }

    /// The server and database, without credentials.
    pub fn describe(&self) -> String {
        self.target.to_string()
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, StoreError> {
        let pool = self.pool.0.as_ref().expect("pool is only taken on drop");
        Ok(pool.get()?)
    }

    pub fn begin_call(
        &self,
        call_sid: &str,
        from: &str,
        to: &str,
        started_at: &str,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO calls (call_sid, from_number, to_number, started_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (call_sid) DO UPDATE SET
                from_number = excluded.from_number,
                to_number = excluded.to_number,
                started_at = COALESCE(calls.started_at, excluded.started_at)",
            &[&call_sid, &from, &to, &started_at],
        )?;
        Ok(())
    }

    pub fn add_line(
        &self,
        call_sid: &str,
        t_ms: u64,
        speaker: &str,
        text: &str,
        confidence: Option<f32>,
        prompt: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        lock_call(&mut tx, call_sid)?;
        tx.execute(
            "INSERT INTO lines (call_sid, seq, t_ms, speaker, text, confidence, prompt)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM lines WHERE call_sid = $1),
                     $2, $3, $4, $5, $6)",
            &[
                &call_sid,
                &to_sql_int(t_ms),
                &speaker,
                &text,
                &confidence.map(f64::from),
                &prompt,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn add_decision(
        &self,
        call_sid: &str,
        t_ms: u64,
        decision: DecisionKind,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        lock_call(&mut tx, call_sid)?;
        tx.execute(
            "INSERT INTO decisions (call_sid, seq, t_ms, decision, detail)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM decisions WHERE call_sid = $1),
                     $2, $3, $4)",
            &[&call_sid, &to_sql_int(t_ms), &decision.as_str(), &detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn save_handoff(
        &self,
        id: &str,
        call_sid: &str,
        card: &Value,
        spoken_summary: &str,
    ) -> Result<(), StoreError> {
        let card_json = serde_json::to_string(card)?;
        let created_at = chrono::Utc::now().to_rfc3339();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        lock_call(&mut tx, call_sid)?;
        tx.execute(
            "INSERT INTO handoffs (id, call_sid, card_json, spoken_summary, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET
                call_sid = excluded.call_sid,
                card_json = excluded.card_json,
                spoken_summary = excluded.spoken_summary",
            &[&id, &call_sid, &card_json, &spoken_summary, &created_at],
        )?;
        tx.execute(
            "UPDATE calls SET
                queue = COALESCE($2, queue),
                reason = COALESCE($3, reason),
                priority = COALESCE($4, priority),
                from_number = COALESCE(from_number, $5),
                to_number = COALESCE(to_number, $6)
             WHERE call_sid = $1",
            &[
                &call_sid,
                &card_str(card, "queue"),
                &card_str(card, "reason"),
                &card_str(card, "priority"),
                &card_str(card, "from"),
                &card_str(card, "to"),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_transfer_status(
        &self,
        handoff_id: &str,
        status: TransferStatus,
        detail: &str,
    ) -> Result<(), StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE handoffs SET transfer_status = $2, transfer_detail = $3 WHERE id = $1",
            &[&handoff_id, &status.as_str(), &detail],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownHandoff(handoff_id.to_owned()));
        }
        Ok(())
    }

    pub fn finish_call(
        &self,
        call_sid: &str,
        outcome: Outcome,
        ended_at: &str,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO calls (call_sid, outcome, ended_at) VALUES ($1, $2, $3)
             ON CONFLICT (call_sid) DO UPDATE SET
                outcome = excluded.outcome,
                ended_at = excluded.ended_at",
            &[&call_sid, &outcome.as_str(), &ended_at],
        )?;
        Ok(())
    }

    pub fn outcome(&self, call_sid: &str) -> Result<Option<Outcome>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT outcome FROM calls WHERE call_sid = $1",
            &[&call_sid],
        )?;
        parse_opt(match row {
            Some(r) => r.try_get::<_, Option<String>>(0)?,
            None => None,
        })
    }

    pub fn handoff_summary(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT spoken_summary FROM handoffs WHERE id = $1", &[&id])?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub fn handoff_for_call(&self, call_sid: &str) -> Result<Option<Value>, StoreError> {
        Ok(latest_handoff(&mut *self.conn()?, call_sid)?.map(|h| h.card))
    }

    pub fn get_call(&self, call_sid: &str) -> Result<Option<Value>, StoreError> {
        let mut conn = self.conn()?;
        // One snapshot, so a record read while its call is being written hangs together.
        let mut tx = conn
            .build_transaction()
            .read_only(true)
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()?;
        let Some(mut call) = call_row(&mut tx, call_sid)? else {
            return Ok(None);
        };
        call.insert(
            "transcript".into(),
            Value::Array(transcript(&mut tx, call_sid)?),
        );
        call.insert(
            "decisions".into(),
            Value::Array(decisions(&mut tx, call_sid)?),
        );
        let (card, transfer) = match latest_handoff(&mut tx, call_sid)? {
            Some(h) => (h.card, h.transfer),
            None => (Value::Null, Value::Null),
        };
        call.insert("handoff".into(), card);
        call.insert("transfer".into(), transfer);
        tx.commit()?;
        Ok(Some(Value::Object(call)))
    }

    pub fn delete_call(&self, call_sid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        for table in ["lines", "decisions", "handoffs"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE call_sid = $1"),
                &[&call_sid],
            )?;
        }
        let existed = tx.execute("DELETE FROM calls WHERE call_sid = $1", &[&call_sid])? > 0;
        tx.commit()?;
        Ok(existed)
    }

    pub fn list_calls(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn()?.query(
            &format!(
                "SELECT {CALL_COLUMNS} FROM calls
                 ORDER BY started_at IS NULL, started_at DESC, ord DESC LIMIT $1"
            ),
            &[&limit],
        )?;
        rows.iter()
            .map(|r| call_json(r).map(Value::Object))
            .collect()
    }

    pub fn search_calls(&self, filter: &CallFilter) -> Result<Vec<Value>, StoreError> {
        let text = like_pattern(filter);
        let limit = to_sql_int(filter.limit.clamp(1, MAX_SEARCH_LIMIT) as u64);
        // SQLite's LIKE ignores ASCII case; ILIKE is the same promise here.
        let rows = self.conn()?.query(
            &format!(
                "SELECT {CALL_COLUMNS} FROM calls
                 WHERE ($1::text IS NULL OR outcome = $1)
                   AND ($2::text IS NULL OR reason = $2)
                   AND ($3::text IS NULL OR queue = $3)
                   AND ($4::text IS NULL OR priority = $4)
                   AND ($5::text IS NULL OR substr(started_at, 1, 10) >= $5)
                   AND ($6::text IS NULL OR substr(started_at, 1, 10) <= $6)
                   AND ($7::text IS NULL OR from_number ILIKE $7 ESCAPE '\\' OR EXISTS (
                        SELECT 1 FROM lines WHERE lines.call_sid = calls.call_sid
                        AND lines.text ILIKE $7 ESCAPE '\\'))
                 ORDER BY started_at IS NULL, started_at DESC, ord DESC LIMIT $8"
            ),
            &[
                &filter.outcome,
                &filter.reason,
                &filter.queue,
                &filter.priority,
                &filter.since,
                &filter.until,
                &text,
                &limit,
            ],
        )?;
        rows.iter()
            .map(|r| call_json(r).map(Value::Object))
            .collect()
    }

    pub fn call_counts(&self, since: &str, bucket_chars: usize) -> Result<Vec<Value>, StoreError> {
        let chars = i32::try_from(bucket_chars).unwrap_or(i32::MAX);
        let rows = self.conn()?.query(
            "SELECT substr(started_at, 1, $2), COALESCE(outcome, 'live'), reason, count(*)
             FROM calls WHERE started_at >= $1
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 NULLS FIRST",
            &[&since, &chars],
        )?;
        rows.iter()
            .map(|r| {
                Ok(json!({
                    "bucket": r.try_get::<_, Option<String>>(0)?,
                    "outcome": r.try_get::<_, String>(1)?,
                    "reason": r.try_get::<_, Option<String>>(2)?,
                    "calls": r.try_get::<_, i64>(3)?,
                }))
            })
            .collect()
    }
}

/// Whether an error may go away on its own: the connection broke or never came, the server
/// is starting or stopping, out of connections, or a statement timed out (SQLSTATE classes
/// 08, 53, 57; serialisation failures and deadlocks). Errors without a SQLSTATE are I/O.
pub(super) fn is_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(),
        Some(code) => {
            let code = code.code();
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "40001"
                || code == "40P01"
        }
    }
}

/// Applies the migrations this build has and the database lacks, all in one transaction
/// under a transaction-scoped advisory lock: a second instance starting at the same moment
/// waits, then finds them applied.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS warmline_schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let found: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM warmline_schema_migrations",
            &[],
        )?
        .try_get(0)?;
    let supported = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            found: found.into(),
            supported: supported.into(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO warmline_schema_migrations (version) VALUES ($1)",
            &[version],
        )?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit()?;
    Ok(())
}

/// Creates the call row if an event arrives before its start (nothing is lost), then locks
/// it: `seq` is `MAX + 1`, and two writers on one call (a reconnect to another instance)
/// must not compute the same one.
fn lock_call(tx: &mut impl GenericClient, call_sid: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO calls (call_sid) VALUES ($1) ON CONFLICT (call_sid) DO NOTHING",
        &[&call_sid],
    )?;
    tx.execute(
        "SELECT 1 FROM calls WHERE call_sid = $1 FOR UPDATE",
        &[&call_sid],
    )?;
    Ok(())
}

/// `user@host:port/dbname`, never the password.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

const CALL_COLUMNS: &str =
    "call_sid, from_number, to_number, started_at, ended_at, outcome, queue, reason, priority";

fn call_json(r: &Row) -> Result<Map<String, Value>, StoreError> {
    let keys = [
        "call_sid",
        "from",
        "to",
        "started_at",
        "ended_at",
        "outcome",
        "queue",
        "reason",
        "priority",
    ];
    let mut map = Map::new();
    for (i, key) in keys.into_iter().enumerate() {
        let v: Option<String> = r.try_get(i)?;
        map.insert(key.into(), v.map_or(Value::Null, Value::String));
    }
    Ok(map)
}

fn call_row(
    c: &mut impl GenericClient,
    call_sid: &str,
) -> Result<Option<Map<String, Value>>, StoreError> {
    let row = c.query_opt(
        &format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_sid = $1"),
        &[&call_sid],
    )?;
    row.as_ref().map(call_json).transpose()
}

fn transcript(c: &mut impl GenericClient, call_sid: &str) -> Result<Vec<Value>, StoreError> {
    let rows = c.query(
        "SELECT t_ms, speaker, text, confidence, prompt FROM lines
         WHERE call_sid = $1 ORDER BY seq",
        &[&call_sid],
    )?;
    rows.iter()
        .map(|r| {
            let mut line = Map::new();
            line.insert("t_ms".into(), json!(r.try_get::<_, i64>(0)?));
            line.insert("speaker".into(), Value::String(r.try_get(1)?));
            line.insert("text".into(), Value::String(r.try_get(2)?));
            if let Some(c) = r.try_get::<_, Option<f64>>(3)? {
                line.insert("confidence".into(), json!(as_f32_decimal(c)));
            }
            if let Some(p) = r.try_get::<_, Option<String>>(4)? {
                line.insert("prompt".into(), Value::String(p));
            }
            Ok(Value::Object(line))
        })
        .collect()
}

fn decisions(c: &mut impl GenericClient, call_sid: &str) -> Result<Vec<Value>, StoreError> {
    let rows = c.query(
        "SELECT t_ms, decision, detail FROM decisions WHERE call_sid = $1 ORDER BY seq",
        &[&call_sid],
    )?;
    rows.iter()
        .map(|r| {
            Ok(json!({
                "t_ms": r.try_get::<_, i64>(0)?,
                "decision": r.try_get::<_, String>(1)?,
                "detail": r.try_get::<_, String>(2)?,
            }))
        })
        .collect()
}

struct StoredHandoff {
    card: Value,
    /// `{status, detail}`, or null while no transfer was attempted.
    transfer: Value,
}

fn latest_handoff(
    c: &mut impl GenericClient,
    call_sid: &str,
) -> Result<Option<StoredHandoff>, StoreError> {
    let Some(row) = c.query_opt(
        "SELECT card_json, transfer_status, transfer_detail FROM handoffs
         WHERE call_sid = $1 ORDER BY created_at DESC, ord DESC LIMIT 1",
        &[&call_sid],
    )?
    else {
        return Ok(None);
    };
    let card_json: String = row.try_get(0)?;
    let status: Option<String> = row.try_get(1)?;
    let detail: Option<String> = row.try_get(2)?;
    let transfer = match status {
        Some(status) => json!({ "status": status, "detail": detail }),
        None => Value::Null,
    };
    Ok(Some(StoredHandoff {
        card: serde_json::from_str(&card_json)?,
        transfer,
    }))
}

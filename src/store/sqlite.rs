//! The embedded backend: call records in one SQLite file.
//!
//! Written while the call runs (one short statement per event) so a crash loses nothing the
//! caller already said. WAL with `synchronous=NORMAL`: a committed row survives a process
//! crash; only an OS crash can lose the last few commits.
//!
//! Concurrency: [`SqliteStore`] is an `Arc<Mutex<Connection>>`, cheap to clone. Its methods
//! are synchronous and hold the lock for one statement or one small transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value, json};

use super::{
    CallFilter, MAX_SEARCH_LIMIT, StoreError, as_f32_decimal, card_str, like_pattern, parse_opt,
    to_sql_int,
};
use crate::call::{DecisionKind, Outcome, TransferStatus};

const FILE_NAME: &str = "warmline.sqlite";
/// Another process (an ops `sqlite3` shell) may briefly hold the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; entry `i` takes `user_version` from `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE IF NOT EXISTS calls (
    call_sid    TEXT PRIMARY KEY,
    from_number TEXT,
    to_number   TEXT,
    started_at  TEXT,
    ended_at    TEXT,
    outcome     TEXT,
    queue       TEXT,
    reason      TEXT,
    priority    TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_start ON calls(started_at);
CREATE TABLE IF NOT EXISTS lines (
    call_sid   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    t_ms       INTEGER NOT NULL,
    speaker    TEXT NOT NULL,
    text       TEXT NOT NULL,
    confidence REAL,
    prompt     TEXT,
    PRIMARY KEY (call_sid, seq)
);
CREATE TABLE IF NOT EXISTS decisions (
    call_sid TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    t_ms     INTEGER NOT NULL,
    decision TEXT NOT NULL,
    detail   TEXT NOT NULL,
    PRIMARY KEY (call_sid, seq)
);
CREATE TABLE IF NOT EXISTS handoffs (
    id              TEXT PRIMARY KEY,
    call_sid        TEXT NOT NULL,
    card_json       TEXT NOT NULL,
    spoken_summary  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    transfer_status TEXT,
    transfer_detail TEXT
);
CREATE INDEX IF NOT EXISTS handoffs_by_call ON handoffs(call_sid);
"#];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/warmline.sqlite` and migrates it.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let mut conn = Connection::open(&path)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A panic while holding the lock leaves the connection usable (SQLite rolls back any
    /// open transaction), so a poisoned lock must not take every later call down with it.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the call's start; calling it again (a reconnect) keeps the first start time.
    pub fn begin_call(
        &self,
        call_sid: &str,
        from: &str,
        to: &str,
        started_at: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO calls (call_sid, from_number, to_number, started_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(call_sid) DO UPDATE SET
                from_number = excluded.from_number,
                to_number = excluded.to_number,
                started_at = COALESCE(calls.started_at, excluded.started_at)",
            params![call_sid, from, to, started_at],
        )?;
        Ok(())
    }

    /// Appends a transcript line; `seq` is assigned here so lines keep arrival order.
    pub fn add_line(
        &self,
        call_sid: &str,
        t_ms: u64,
        speaker: &str,
        text: &str,
        confidence: Option<f32>,
        prompt: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        ensure_call(&tx, call_sid)?;
        tx.execute(
            "INSERT INTO lines (call_sid, seq, t_ms, speaker, text, confidence, prompt)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM lines WHERE call_sid = ?1),
                     ?2, ?3, ?4, ?5, ?6)",
            params![
                call_sid,
                to_sql_int(t_ms),
                speaker,
                text,
                confidence.map(f64::from),
                prompt
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
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        ensure_call(&tx, call_sid)?;
        tx.execute(
            "INSERT INTO decisions (call_sid, seq, t_ms, decision, detail)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM decisions WHERE call_sid = ?1),
                     ?2, ?3, ?4)",
            params![call_sid, to_sql_int(t_ms), decision.as_str(), detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stores the context card (replacing one saved under the same id) and copies its
    /// queue / reason / priority onto the call row so listings need not parse cards.
    pub fn save_handoff(
        &self,
        id: &str,
        call_sid: &str,
        card: &Value,
        spoken_summary: &str,
    ) -> Result<(), StoreError> {
        let card_json = serde_json::to_string(card)?;
        let created_at = chrono::Utc::now().to_rfc3339();
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        ensure_call(&tx, call_sid)?;
        tx.execute(
            "INSERT INTO handoffs (id, call_sid, card_json, spoken_summary, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET
                call_sid = excluded.call_sid,
                card_json = excluded.card_json,
                spoken_summary = excluded.spoken_summary",
            params![id, call_sid, card_json, spoken_summary, created_at],
        )?;
        tx.execute(
            "UPDATE calls SET
                queue = COALESCE(?2, queue),
                reason = COALESCE(?3, reason),
                priority = COALESCE(?4, priority),
                from_number = COALESCE(from_number, ?5),
                to_number = COALESCE(to_number, ?6)
             WHERE call_sid = ?1",
            params![
                call_sid,
                card_str(card, "queue"),
                card_str(card, "reason"),
                card_str(card, "priority"),
                card_str(card, "from"),
                card_str(card, "to"),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// What the provider made of the transfer; `detail` says why (e.g. an error kind).
    pub fn set_transfer_status(
        &self,
        handoff_id: &str,
        status: TransferStatus,
        detail: &str,
    ) -> Result<(), StoreError> {
        let changed = self.conn().execute(
            "UPDATE handoffs SET transfer_status = ?2, transfer_detail = ?3 WHERE id = ?1",
            params![handoff_id, status.as_str(), detail],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownHandoff(handoff_id.to_owned()));
        }
        Ok(())
    }

    /// Sets the final outcome; a later call overwrites an earlier one.
    pub fn finish_call(
        &self,
        call_sid: &str,
        outcome: Outcome,
        ended_at: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO calls (call_sid, outcome, ended_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(call_sid) DO UPDATE SET
                outcome = excluded.outcome,
                ended_at = excluded.ended_at",
            params![call_sid, outcome.as_str(), ended_at],
        )?;
        Ok(())
    }

    pub fn outcome(&self, call_sid: &str) -> Result<Option<Outcome>, StoreError> {
        let outcome = self
            .conn()
            .query_row(
                "SELECT outcome FROM calls WHERE call_sid = ?1",
                [call_sid],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?;
        parse_opt(outcome.flatten())
    }

    /// The sentence the agent hears before the caller is bridged.
    pub fn handoff_summary(&self, id: &str) -> Result<Option<String>, StoreError> {
        let summary = self
            .conn()
            .query_row(
                "SELECT spoken_summary FROM handoffs WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(summary)
    }

    /// The most recent context card written for the call.
    pub fn handoff_for_call(&self, call_sid: &str) -> Result<Option<Value>, StoreError> {
        let conn = self.conn();
        Ok(latest_handoff(&conn, call_sid)?.map(|h| h.card))
    }

    /// The full record served by `GET /api/calls/{call_sid}`.
    pub fn get_call(&self, call_sid: &str) -> Result<Option<Value>, StoreError> {
        let conn = self.conn();
        let Some(mut call) = call_row(&conn, call_sid)? else {
            return Ok(None);
        };
        call.insert(
            "transcript".into(),
            Value::Array(transcript(&conn, call_sid)?),
        );
        call.insert(
            "decisions".into(),
            Value::Array(decisions(&conn, call_sid)?),
        );
        let handoff = latest_handoff(&conn, call_sid)?;
        let (card, transfer) = match handoff {
            Some(h) => (h.card, h.transfer),
            None => (Value::Null, Value::Null),
        };
        call.insert("handoff".into(), card);
        call.insert("transfer".into(), transfer);
        Ok(Some(Value::Object(call)))
    }

    /// Removes the call with its lines, decisions and handoffs; `false` when there was none.
    pub fn delete_call(&self, call_sid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        for table in ["lines", "decisions", "handoffs"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE call_sid = ?1"),
                [call_sid],
            )?;
        }
        let existed = tx.execute("DELETE FROM calls WHERE call_sid = ?1", [call_sid])? > 0;
        tx.commit()?;
        Ok(existed)
    }

    /// Newest calls first, without transcripts.
    pub fn list_calls(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CALL_COLUMNS} FROM calls
             ORDER BY started_at IS NULL, started_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], call_json)?;
        Ok(rows
            .map(|r| r.map(Value::Object))
            .collect::<Result<_, _>>()?)
    }
}

impl SqliteStore {
    /// Newest first, without transcripts, narrowed by `filter`.
    pub fn search_calls(&self, filter: &CallFilter) -> Result<Vec<Value>, StoreError> {
        let text = like_pattern(filter);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CALL_COLUMNS} FROM calls
             WHERE (?1 IS NULL OR outcome = ?1)
               AND (?2 IS NULL OR reason = ?2)
               AND (?3 IS NULL OR queue = ?3)
               AND (?4 IS NULL OR priority = ?4)
               AND (?5 IS NULL OR substr(started_at, 1, 10) >= ?5)
               AND (?6 IS NULL OR substr(started_at, 1, 10) <= ?6)
               AND (?7 IS NULL OR from_number LIKE ?7 ESCAPE '\\' OR EXISTS (
                    SELECT 1 FROM lines WHERE lines.call_sid = calls.call_sid
                    AND lines.text LIKE ?7 ESCAPE '\\'))
             ORDER BY started_at IS NULL, started_at DESC, rowid DESC LIMIT ?8"
        ))?;
        let limit = to_sql_int(filter.limit.clamp(1, MAX_SEARCH_LIMIT) as u64);
        let rows = stmt.query_map(
            params![
                filter.outcome,
                filter.reason,
                filter.queue,
                filter.priority,
                filter.since,
                filter.until,
                text,
                limit
            ],
            call_json,
        )?;
        Ok(rows
            .map(|r| r.map(Value::Object))
            .collect::<Result<_, _>>()?)
    }

    /// Calls started since `since` (RFC 3339 or a prefix of one), counted by time bucket
    /// (the first `bucket_chars` of the start time: 10 for days, 13 for hours), outcome and
    /// reason.
    pub fn call_counts(&self, since: &str, bucket_chars: usize) -> Result<Vec<Value>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT substr(started_at, 1, ?2), COALESCE(outcome, 'live'), reason, count(*)
             FROM calls WHERE started_at >= ?1
             GROUP BY 1, 2, 3 ORDER BY 1",
        )?;
        let rows = stmt.query_map(params![since, to_sql_int(bucket_chars as u64)], |r| {
            Ok(json!({
                "bucket": r.get::<_, Option<String>>(0)?,
                "outcome": r.get::<_, String>(1)?,
                "reason": r.get::<_, Option<String>>(2)?,
                "calls": r.get::<_, i64>(3)?,
            }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL mode; call records will be slower");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let tx = write_tx(conn)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for sql in &MIGRATIONS[found.max(0) as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    Ok(())
}

/// Takes the write lock up front: a deferred transaction that reads first can fail with
/// `SQLITE_BUSY` in WAL mode when another connection writes in between, without waiting.
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Rows for events of a call nobody announced are still worth keeping: the call row is
/// created on demand instead of the event being lost.
fn ensure_call(conn: &Connection, call_sid: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO calls (call_sid) VALUES (?1)",
        [call_sid],
    )?;
    Ok(())
}

const CALL_COLUMNS: &str =
    "call_sid, from_number, to_number, started_at, ended_at, outcome, queue, reason, priority";

fn call_json(r: &Row<'_>) -> rusqlite::Result<Map<String, Value>> {
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
        map.insert(key.into(), opt_text(r.get(i)?));
    }
    Ok(map)
}

fn opt_text(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::String)
}

fn call_row(conn: &Connection, call_sid: &str) -> Result<Option<Map<String, Value>>, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_sid = ?1"),
            [call_sid],
            call_json,
        )
        .optional()?;
    Ok(row)
}

fn transcript(conn: &Connection, call_sid: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT t_ms, speaker, text, confidence, prompt FROM lines
         WHERE call_sid = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([call_sid], |r| {
        let mut line = Map::new();
        line.insert("t_ms".into(), json!(r.get::<_, i64>(0)?));
        line.insert("speaker".into(), Value::String(r.get(1)?));
        line.insert("text".into(), Value::String(r.get(2)?));
        if let Some(c) = r.get::<_, Option<f64>>(3)? {
            line.insert("confidence".into(), json!(as_f32_decimal(c)));
        }
        if let Some(p) = r.get::<_, Option<String>>(4)? {
            line.insert("prompt".into(), Value::String(p));
        }
        Ok(Value::Object(line))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn decisions(conn: &Connection, call_sid: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT t_ms, decision, detail FROM decisions WHERE call_sid = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([call_sid], |r| {
        Ok(json!({
            "t_ms": r.get::<_, i64>(0)?,
            "decision": r.get::<_, String>(1)?,
            "detail": r.get::<_, String>(2)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

struct StoredHandoff {
    card: Value,
    /// `{status, detail}`, or null while no transfer was attempted.
    transfer: Value,
}

fn latest_handoff(conn: &Connection, call_sid: &str) -> Result<Option<StoredHandoff>, StoreError> {
    let row = conn
        .query_row(
            "SELECT card_json, transfer_status, transfer_detail FROM handoffs
             WHERE call_sid = ?1 ORDER BY created_at DESC, rowid DESC LIMIT 1",
            [call_sid],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((card_json, status, detail)) = row else {
        return Ok(None);
    };
    let transfer = match status {
        Some(status) => json!({ "status": status, "detail": detail }),
        None => Value::Null,
    };
    Ok(Some(StoredHandoff {
        card: serde_json::from_str(&card_json)?,
        transfer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(call_sid: &str) -> Value {
        json!({
            "call_sid": call_sid, "from": "+15550001111", "to": "+15550009000",
            "queue": "billing", "target": "+15550100001", "reason": "explicit_request",
            "priority": "high", "intent": "billing",
            "facts": { "account_number": "44719" },
            "summary": "Caller disputes a charge.",
            "spoken_summary": "Billing dispute, account 44719.",
        })
    }

    #[test]
    fn full_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .begin_call(
                "CA1",
                "+15550001111",
                "+15550009000",
                "2025-01-01T10:00:00Z",
            )
            .unwrap();
        store
            .add_line(
                "CA1",
                0,
                "system",
                "Hi, how can I help?",
                None,
                Some("greeting"),
            )
            .unwrap();
        store
            .add_line("CA1", 1840, "caller", "I need an agent", Some(0.9), None)
            .unwrap();
        store
            .add_decision("CA1", 2100, DecisionKind::Escalate, "explicit_request")
            .unwrap();
        store
            .save_handoff("H1", "CA1", &card("CA1"), "Billing dispute, account 44719.")
            .unwrap();
        store
            .set_transfer_status("H1", TransferStatus::Accepted, "attempts=2")
            .unwrap();
        store
            .finish_call("CA1", Outcome::Transferred, "2025-01-01T10:01:00Z")
            .unwrap();

        assert_eq!(store.outcome("CA1").unwrap(), Some(Outcome::Transferred));
        assert_eq!(
            store.handoff_summary("H1").unwrap().as_deref(),
            Some("Billing dispute, account 44719.")
        );
        assert_eq!(store.handoff_for_call("CA1").unwrap(), Some(card("CA1")));

        let record = store.get_call("CA1").unwrap().unwrap();
        let expected = json!({
            "call_sid": "CA1", "from": "+15550001111", "to": "+15550009000",
            "started_at": "2025-01-01T10:00:00Z", "ended_at": "2025-01-01T10:01:00Z",
            "outcome": "transferred", "queue": "billing", "reason": "explicit_request",
            "priority": "high",
            "transcript": [
                {"t_ms": 0, "speaker": "system", "text": "Hi, how can I help?", "prompt": "greeting"},
                {"t_ms": 1840, "speaker": "caller", "text": "I need an agent", "confidence": 0.9},
            ],
            "decisions": [{"t_ms": 2100, "decision": "escalate", "detail": "explicit_request"}],
            "handoff": card("CA1"),
            "transfer": {"status": "accepted", "detail": "attempts=2"},
        });
        assert_eq!(record, expected);
    }

    #[test]
    fn unknown_call_and_handoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.get_call("CA404").unwrap(), None);
        assert_eq!(store.outcome("CA404").unwrap(), None);
        assert_eq!(store.handoff_summary("nope").unwrap(), None);
        assert_eq!(store.handoff_for_call("CA404").unwrap(), None);
        let err = store
            .set_transfer_status("nope", TransferStatus::Failed, "x")
            .unwrap_err();
        assert!(matches!(err, StoreError::UnknownHandoff(_)), "{err:?}");
    }

    #[test]
    fn call_without_handoff_has_null_handoff_and_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .begin_call("CA2", "a", "b", "2025-01-01T00:00:00Z")
            .unwrap();
        let record = store.get_call("CA2").unwrap().unwrap();
        assert_eq!(record["handoff"], Value::Null);
        assert_eq!(record["transfer"], Value::Null);
        assert_eq!(record["transcript"], json!([]));
        assert_eq!(record["outcome"], Value::Null);
    }

    #[test]
    fn lines_keep_insertion_order_by_seq() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        // t_ms deliberately out of order: transcripts can finish after later prompts.
        for (t, text) in [(500, "one"), (300, "two"), (900, "three")] {
            store
                .add_line("CA3", t, "caller", text, None, None)
                .unwrap();
        }
        let texts: Vec<_> = store.get_call("CA3").unwrap().unwrap()["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
    }

    #[test]
    fn line_for_unknown_call_creates_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .add_line("CA4", 10, "caller", "hello", None, None)
            .unwrap();
        store
            .begin_call("CA4", "+1", "+2", "2025-01-01T00:00:00Z")
            .unwrap();
        let record = store.get_call("CA4").unwrap().unwrap();
        assert_eq!(record["from"], "+1");
        assert_eq!(record["started_at"], "2025-01-01T00:00:00Z");
        assert_eq!(record["transcript"][0]["text"], "hello");
    }

    #[test]
    fn begin_call_twice_keeps_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .begin_call("CA5", "+1", "+2", "2025-01-01T00:00:00Z")
            .unwrap();
        store
            .begin_call("CA5", "+1", "+2", "2025-01-01T00:05:00Z")
            .unwrap();
        let record = store.get_call("CA5").unwrap().unwrap();
        assert_eq!(record["started_at"], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn list_calls_newest_first_without_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .begin_call("CA_old", "+1", "+2", "2025-01-01T00:00:00Z")
            .unwrap();
        store
            .begin_call("CA_new", "+1", "+2", "2025-01-02T00:00:00Z")
            .unwrap();
        store
            .begin_call("CA_mid", "+1", "+2", "2025-01-01T12:00:00Z")
            .unwrap();
        store
            .add_line("CA_new", 0, "caller", "hi", None, None)
            .unwrap();
        let list = store.list_calls(10).unwrap();
        let sids: Vec<_> = list
            .iter()
            .map(|c| c["call_sid"].as_str().unwrap())
            .collect();
        assert_eq!(sids, ["CA_new", "CA_mid", "CA_old"]);
        assert!(list[0].get("transcript").is_none());
        assert_eq!(store.list_calls(2).unwrap().len(), 2);
    }

    #[test]
    fn reopen_after_drop_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let store = SqliteStore::open(dir.path()).unwrap();
            store
                .begin_call("CA6", "+1", "+2", "2025-01-01T00:00:00Z")
                .unwrap();
            store
                .add_line("CA6", 5, "caller", "still here", Some(0.5), None)
                .unwrap();
            store
                .save_handoff("H6", "CA6", &card("CA6"), "summary")
                .unwrap();
            store.get_call("CA6").unwrap().unwrap()
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.get_call("CA6").unwrap().unwrap(), before);
        assert!(dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn wal_mode_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        drop(store);
        // Opening twice must not re-run or fail migrations.
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = store.conn();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn open_creates_nested_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        SqliteStore::open(&nested).unwrap();
        assert!(nested.join(FILE_NAME).exists());
    }

    #[test]
    fn concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        store
                            .add_line("CA_shared", i, "caller", &format!("{t}-{i}"), None, None)
                            .unwrap();
                        store
                            .add_decision(&format!("CA_{t}"), i, DecisionKind::Hold, "x")
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let shared = store.get_call("CA_shared").unwrap().unwrap();
        assert_eq!(shared["transcript"].as_array().unwrap().len(), 100);
        let conn = store.conn();
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM lines WHERE call_sid = 'CA_shared' ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
        drop(conn);
        for t in 0..4 {
            let own = store.get_call(&format!("CA_{t}")).unwrap().unwrap();
            assert_eq!(own["decisions"].as_array().unwrap().len(), 25);
        }
    }

    #[test]
    fn concurrent_writers_on_separate_connections() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let store = SqliteStore::open(dir.path()).unwrap();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        store
                            .add_line("CA_multi", i, "caller", &format!("{t}-{i}"), None, None)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let record = store.get_call("CA_multi").unwrap().unwrap();
        assert_eq!(record["transcript"].as_array().unwrap().len(), 60);
    }

    #[tokio::test]
    async fn run_moves_work_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        store
            .run(|s| s.begin_call("CA7", "+1", "+2", "2025-01-01T00:00:00Z"))
            .await
            .unwrap();
        let outcome = store
            .run(|s| {
                s.finish_call("CA7", Outcome::SelfServed, "2025-01-01T00:01:00Z")?;
                s.outcome("CA7")
            })
            .await
            .unwrap();
        assert_eq!(outcome, Some(Outcome::SelfServed));
    }

    #[test]
    fn an_outcome_this_build_does_not_know_is_an_error_and_the_record_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .begin_call("CA9", "+1", "+2", "2025-01-01T00:00:00Z")
            .unwrap();
        // As a newer instance sharing the database might leave it.
        store
            .conn()
            .execute(
                "UPDATE calls SET outcome = 'escalated_to_mars' WHERE call_sid = 'CA9'",
                [],
            )
            .unwrap();
        let err = store.outcome("CA9").unwrap_err();
        assert!(
            matches!(&err, StoreError::Unrecognised(u) if u.value == "escalated_to_mars"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "stored value: unknown call outcome `escalated_to_mars`"
        );
        assert!(!err.is_transient());
        let record = store.get_call("CA9").unwrap().unwrap();
        assert_eq!(record["outcome"], "escalated_to_mars");
    }
}

//! Call records: calls, transcript lines, decisions, handoffs and context cards.
//!
//! Two backends behind one API: SQLite (the embedded default, one file per instance) and
//! PostgreSQL (`WARMLINE_DATABASE_URL=postgres://…`), which many instances share so that any
//! of them can finish any call. A closed enum rather than a trait object: there are exactly
//! two, and every caller sees the same synchronous methods.
//!
//! The methods block (disk or network). Async code must not call them on a runtime worker;
//! use [`Store::run`], which moves the work to tokio's blocking pool.

mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::call::{DecisionKind, Outcome, TransferStatus, UnknownKind};

pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("cannot create data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("postgres connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database URL: {0}")]
    BadUrl(String),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this build ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("no handoff with id {0}")]
    UnknownHandoff(String),
    /// A row holds a value this build has no variant for: a newer instance sharing the
    /// database wrote it. Typed rather than guessed, so callers decide which way is safe.
    #[error("stored value: {0}")]
    Unrecognised(#[from] UnknownKind),
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether trying the same write again later may succeed: the database was unreachable,
    /// restarting, busy or timed out, as opposed to a write that can never succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Postgres(e) => postgres::is_transient(e),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// Where call records live.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/warmline.sqlite` and migrates it.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(data_dir).map(Store::Sqlite)
    }

    /// Connects to PostgreSQL and applies the migrations this build carries (under an
    /// advisory lock, so instances starting together do not race).
    pub fn connect(url: &str) -> Result<Store, StoreError> {
        PgStore::connect(url).map(Store::Postgres)
    }

    /// PostgreSQL when `database_url` is set, else SQLite in `data_dir`.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Store, StoreError> {
        match settings.database_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Store::connect(url),
            _ => Store::open(&settings.data_dir),
        }
    }

    /// Where the records are, for logs: a file path, or the server without credentials.
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path().display().to_string(),
            Store::Postgres(p) => p.describe(),
        }
    }

    /// Runs `f` on tokio's blocking pool so database I/O never stalls a runtime worker.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Records the call's start; calling it again (a reconnect) keeps the first start time.
    pub fn begin_call(
        &self,
        call_sid: &str,
        from: &str,
        to: &str,
        started_at: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.begin_call(call_sid, from, to, started_at))
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
        each!(self, s => s.add_line(call_sid, t_ms, speaker, text, confidence, prompt))
    }

    pub fn add_decision(
        &self,
        call_sid: &str,
        t_ms: u64,
        decision: DecisionKind,
        detail: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.add_decision(call_sid, t_ms, decision, detail))
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
        each!(self, s => s.save_handoff(id, call_sid, card, spoken_summary))
    }

    /// What the provider made of the transfer; `detail` says why (e.g. an error kind).
    pub fn set_transfer_status(
        &self,
        handoff_id: &str,
        status: TransferStatus,
        detail: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_transfer_status(handoff_id, status, detail))
    }

    /// Sets the final outcome; a later call overwrites an earlier one.
    pub fn finish_call(
        &self,
        call_sid: &str,
        outcome: Outcome,
        ended_at: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.finish_call(call_sid, outcome, ended_at))
    }

    /// How the call ended; `None` while it has not (or no such call). An outcome this build
    /// does not know is [`StoreError::Unrecognised`]: to the fail-open paths that is "not
    /// known to be over", so the caller reaches a person rather than being hung up on.
    ///
    /// The JSON records ([`Store::get_call`] and the listings) pass stored strings through
    /// unparsed, so they show such a value as it is instead of failing the whole record.
    pub fn outcome(&self, call_sid: &str) -> Result<Option<Outcome>, StoreError> {
        each!(self, s => s.outcome(call_sid))
    }

    /// The sentence the agent hears before the caller is bridged.
    pub fn handoff_summary(&self, id: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.handoff_summary(id))
    }

    /// The most recent context card written for the call.
    pub fn handoff_for_call(&self, call_sid: &str) -> Result<Option<Value>, StoreError> {
        each!(self, s => s.handoff_for_call(call_sid))
    }

    /// The full record served by `GET /api/calls/{call_sid}`.
    pub fn get_call(&self, call_sid: &str) -> Result<Option<Value>, StoreError> {
        each!(self, s => s.get_call(call_sid))
    }

    /// Removes the call with its lines, decisions and handoffs; `false` when there was none.
    pub fn delete_call(&self, call_sid: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete_call(call_sid))
    }

    /// Newest calls first, without transcripts.
    pub fn list_calls(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        each!(self, s => s.list_calls(limit))
    }

    /// Newest first, without transcripts, narrowed by `filter`.
    pub fn search_calls(&self, filter: &CallFilter) -> Result<Vec<Value>, StoreError> {
        each!(self, s => s.search_calls(filter))
    }

    /// Calls started since `since` (RFC 3339 or a prefix of one), counted by time bucket
    /// (the first `bucket_chars` of the start time: 10 for days, 13 for hours), outcome and
    /// reason.
    pub fn call_counts(&self, since: &str, bucket_chars: usize) -> Result<Vec<Value>, StoreError> {
        each!(self, s => s.call_counts(since, bucket_chars))
    }
}

/// What the console's history may filter on. Every field narrows; `None` leaves it open.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// A string, not an [`Outcome`]: the filter matches stored rows, which may hold outcomes
    /// a newer instance on a shared database wrote and this build cannot name.
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    /// First and last day (`YYYY-MM-DD`, UTC) the call started on, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Words in any transcript line, or in the caller's number (case-insensitive).
    pub text: Option<String>,
    pub limit: usize,
}

/// The longest list one query returns, and the longest text searched for: a text search
/// scans the transcript lines, so both keep one request's cost bounded.
pub const MAX_SEARCH_LIMIT: usize = 500;
pub const MAX_SEARCH_TEXT: usize = 200;

/// The filter's text as a `LIKE … ESCAPE '\'` pattern matching it anywhere, or `None`.
fn like_pattern(filter: &CallFilter) -> Option<String> {
    filter
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let t: String = t.chars().take(MAX_SEARCH_TEXT).collect();
            let escaped = t
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
}

/// Call lengths in ms are far below `i64::MAX`; saturate rather than wrap if one is not.
fn to_sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A nullable text column as a vocabulary value.
fn parse_opt<T: std::str::FromStr<Err = UnknownKind>>(
    v: Option<String>,
) -> Result<Option<T>, StoreError> {
    Ok(v.as_deref().map(str::parse).transpose()?)
}

fn card_str(card: &Value, key: &str) -> Option<String> {
    card.get(key)?.as_str().map(str::to_owned)
}

/// Confidence arrives as f32; widening to f64 would print 0.9 as 0.8999999761581421.
fn as_f32_decimal(v: f64) -> f64 {
    (v as f32).to_string().parse().unwrap_or(v)
}

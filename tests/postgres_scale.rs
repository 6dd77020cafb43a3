//! Many instances, one PostgreSQL: the store's contract on both backends, then two warmline
//! instances on one real PostgreSQL (Debian's, started by the test in a temporary directory)
//! — a stream-ended callback that lands on the instance that never saw the call, records
//! listed by either, kill -9 mid-call, and a database that goes away mid-call.
//!
//! Without PostgreSQL installed these tests skip loudly, except under CI, where they fail.

mod common;
#[path = "common/postgres.rs"]
mod pg;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::twilio::*;
use pg::Postgres;
use warmline::call::{DecisionKind, Outcome, TransferStatus};
use warmline::store::{CallFilter, Store, StoreError};

// ---------------------------------------------------------------------------------------
// The store contract: the same assertions against SQLite and PostgreSQL.

type Case = fn(&dyn Fn() -> Store);

/// Every case gets fresh stores from `open` (a new database each call for PostgreSQL means
/// a new instance on the same database: `open` is called again for "another instance").
const CASES: &[(&str, Case)] = &[
    ("full_round_trip", full_round_trip),
    ("unknown_call_and_handoff", unknown_call_and_handoff),
    ("lines_keep_arrival_order", lines_keep_arrival_order),
    ("events_before_begin_create_the_call", events_before_begin),
    ("list_and_search", list_and_search),
    ("call_counts_by_bucket", call_counts_by_bucket),
    ("delete_call_removes_everything_of_one_call", delete_call),
    (
        "two_instances_writing_one_call",
        two_instances_writing_one_call,
    ),
];

#[test]
fn store_contract_on_sqlite() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        eprintln!("sqlite: {name}");
        case(&|| Store::open(&path).unwrap());
    }
}

#[test]
fn store_contract_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    for (i, (name, case)) in CASES.iter().enumerate() {
        let url = pg.create_db(&format!("contract{i}"));
        eprintln!("postgres: {name}");
        case(&|| Store::connect(&url).unwrap());
    }
}

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

fn full_round_trip(open: &dyn Fn() -> Store) {
    let store = open();
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
    assert_eq!(store.get_call("CA1").unwrap().unwrap(), expected);
    // Another instance (a new connection) reads exactly the same.
    let other = open();
    assert_eq!(other.get_call("CA1").unwrap().unwrap(), expected);
    assert_eq!(other.outcome("CA1").unwrap(), Some(Outcome::Transferred));
    assert_eq!(
        other.handoff_summary("H1").unwrap().as_deref(),
        Some("Billing dispute, account 44719.")
    );
    assert_eq!(other.handoff_for_call("CA1").unwrap(), Some(card("CA1")));
}

fn unknown_call_and_handoff(open: &dyn Fn() -> Store) {
    let store = open();
    assert_eq!(store.get_call("CA404").unwrap(), None);
    assert_eq!(store.outcome("CA404").unwrap(), None);
    assert_eq!(store.handoff_summary("nope").unwrap(), None);
    assert_eq!(store.handoff_for_call("CA404").unwrap(), None);
    assert!(!store.delete_call("CA404").unwrap());
    let err = store
        .set_transfer_status("nope", TransferStatus::Failed, "x")
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownHandoff(_)), "{err:?}");
    assert!(!err.is_transient());
}

fn lines_keep_arrival_order(open: &dyn Fn() -> Store) {
    let store = open();
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

fn events_before_begin(open: &dyn Fn() -> Store) {
    let store = open();
    store
        .add_line("CA4", 10, "caller", "hello", None, None)
        .unwrap();
    store
        .begin_call("CA4", "+1", "+2", "2025-01-01T00:00:00Z")
        .unwrap();
    store
        .begin_call("CA4", "+1", "+2", "2025-01-01T00:05:00Z")
        .unwrap();
    let record = store.get_call("CA4").unwrap().unwrap();
    assert_eq!(record["from"], "+1");
    assert_eq!(record["started_at"], "2025-01-01T00:00:00Z");
    assert_eq!(record["transcript"][0]["text"], "hello");
    assert_eq!(record["handoff"], Value::Null);
    assert_eq!(record["transfer"], Value::Null);
}

fn list_and_search(open: &dyn Fn() -> Store) {
    let store = open();
    for (sid, at) in [
        ("CA_old", "2025-01-01T00:00:00Z"),
        ("CA_new", "2025-01-02T00:00:00Z"),
        ("CA_mid", "2025-01-01T12:00:00Z"),
    ] {
        store.begin_call(sid, "+15550001111", "+2", at).unwrap();
    }
    store
        .add_line(
            "CA_new",
            0,
            "caller",
            "My ROUTER is 100% dead_ish",
            None,
            None,
        )
        .unwrap();
    store
        .finish_call("CA_mid", Outcome::SelfServed, "2025-01-01T12:01:00Z")
        .unwrap();
    let sids = |v: Vec<Value>| -> Vec<String> {
        v.iter()
            .map(|c| c["call_sid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        sids(store.list_calls(10).unwrap()),
        ["CA_new", "CA_mid", "CA_old"]
    );
    assert!(store.list_calls(10).unwrap()[0].get("transcript").is_none());
    assert_eq!(store.list_calls(2).unwrap().len(), 2);
    let search = |f: CallFilter| sids(store.search_calls(&f).unwrap());
    let all = CallFilter {
        limit: 10,
        ..CallFilter::default()
    };
    // Case-insensitive, and % / _ are literal.
    for text in ["router", "100% dead_", "ROUTER IS"] {
        let f = CallFilter {
            text: Some(text.into()),
            ..all.clone()
        };
        assert_eq!(search(f), ["CA_new"], "{text}");
    }
    let f = CallFilter {
        text: Some("100%%".into()),
        ..all.clone()
    };
    assert!(search(f).is_empty());
    let f = CallFilter {
        outcome: Some("self_served".into()),
        ..all.clone()
    };
    assert_eq!(search(f), ["CA_mid"]);
    let f = CallFilter {
        since: Some("2025-01-01".into()),
        until: Some("2025-01-01".into()),
        ..all.clone()
    };
    assert_eq!(search(f), ["CA_mid", "CA_old"]);
    let f = CallFilter {
        text: Some("5550001".into()),
        ..all
    };
    assert_eq!(search(f).len(), 3);
}

fn call_counts_by_bucket(open: &dyn Fn() -> Store) {
    let store = open();
    store
        .begin_call("A", "+1", "+2", "2025-01-01T10:00:00Z")
        .unwrap();
    store
        .begin_call("B", "+1", "+2", "2025-01-01T11:00:00Z")
        .unwrap();
    store
        .begin_call("C", "+1", "+2", "2025-01-02T10:00:00Z")
        .unwrap();
    store
        .begin_call("D", "+1", "+2", "2024-12-31T10:00:00Z")
        .unwrap();
    store
        .finish_call("B", Outcome::Transferred, "2025-01-01T11:01:00Z")
        .unwrap();
    store
        .save_handoff("HB", "B", &json!({"reason": "explicit_request"}), "s")
        .unwrap();
    let counts = store.call_counts("2025-01-01", 10).unwrap();
    assert_eq!(
        counts,
        [
            json!({"bucket": "2025-01-01", "outcome": "live", "reason": null, "calls": 1}),
            json!({"bucket": "2025-01-01", "outcome": "transferred", "reason": "explicit_request", "calls": 1}),
            json!({"bucket": "2025-01-02", "outcome": "live", "reason": null, "calls": 1}),
        ]
    );
}

fn delete_call(open: &dyn Fn() -> Store) {
    let store = open();
    for sid in ["CA_gone", "CA_kept"] {
        store
            .begin_call(sid, "+1", "+2", "2025-01-01T00:00:00Z")
            .unwrap();
        store.add_line(sid, 1, "caller", "hi", None, None).unwrap();
        store
            .add_decision(sid, 2, DecisionKind::Escalate, "x")
            .unwrap();
        store
            .save_handoff(&format!("H_{sid}"), sid, &card(sid), "summary")
            .unwrap();
    }
    let kept = store.get_call("CA_kept").unwrap().unwrap();
    assert!(store.delete_call("CA_gone").unwrap());
    assert_eq!(store.get_call("CA_gone").unwrap(), None);
    assert_eq!(store.handoff_summary("H_CA_gone").unwrap(), None);
    assert_eq!(store.handoff_for_call("CA_gone").unwrap(), None);
    assert!(!store.delete_call("CA_gone").unwrap());
    // A new call under the same sid starts empty: no orphaned lines came back.
    store
        .add_line("CA_gone", 9, "caller", "again", None, None)
        .unwrap();
    let again = store.get_call("CA_gone").unwrap().unwrap();
    assert_eq!(again["transcript"].as_array().unwrap().len(), 1);
    assert_eq!(again["decisions"], json!([]));
    assert_eq!(store.get_call("CA_kept").unwrap().unwrap(), kept);
}

fn two_instances_writing_one_call(open: &dyn Fn() -> Store) {
    let stores = [open(), open(), open()];
    std::thread::scope(|s| {
        for (t, store) in stores.iter().enumerate() {
            s.spawn(move || {
                for i in 0..20 {
                    store
                        .add_line("CA_multi", i, "caller", &format!("{t}-{i}"), None, None)
                        .unwrap();
                    store
                        .add_decision("CA_multi", i, DecisionKind::Hold, "x")
                        .unwrap();
                }
            });
        }
    });
    let record = open().get_call("CA_multi").unwrap().unwrap();
    assert_eq!(record["transcript"].as_array().unwrap().len(), 60);
    assert_eq!(record["decisions"].as_array().unwrap().len(), 60);
}

#[test]
fn postgres_migrations_run_once_when_instances_start_together_and_newer_schema_is_refused() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("migrations");
    let stores: Vec<Store> = std::thread::scope(|s| {
        let joins: Vec<_> = (0..4).map(|_| s.spawn(|| Store::connect(&url))).collect();
        joins
            .into_iter()
            .map(|j| j.join().unwrap().expect("every instance starts"))
            .collect()
    });
    stores[0]
        .begin_call("CAm", "+1", "+2", "2025-01-01T00:00:00Z")
        .unwrap();
    assert!(stores[3].get_call("CAm").unwrap().is_some());
    drop(stores);
    Postgres::exec(
        &url,
        "INSERT INTO warmline_schema_migrations (version) VALUES (99)",
    );
    let err = Store::connect(&url).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err:?}"
    );
    let bad = Store::connect("postgres://postgres@127.0.0.1:1/x").unwrap_err();
    assert!(
        bad.is_transient() || matches!(bad, StoreError::Postgres(_)),
        "{bad:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Two instances on one PostgreSQL.

async fn instance(url: &str) -> Harness {
    let url = url.to_string();
    start_with(move |s| s.database_url = Some(url)).await
}

/// The stored record as instance `h` serves it (API, with the token).
async fn record(h: &Harness, sid: &str) -> Value {
    let (status, v) = get_json(h, &format!("/api/calls/{sid}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Polls `h`'s API until `ok` holds for the record (bounded).
async fn wait_record(h: &Harness, sid: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = get_json(h, &format!("/api/calls/{sid}")).await;
        if status == 200 && ok(&v) {
            return v;
        }
        assert!(Instant::now() < until, "record never got there: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unescape(t: &str) -> String {
    t.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ended_on_b_dials_the_queue_a_chose_with_its_card_and_whisper() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("cross");
    let a = instance(&url).await;
    let b = instance(&url).await;
    // A's transfer request hangs, so the card is stored but the caller is not yet bridged
    // when the stream drops.
    *a.fake.hang.lock().unwrap() = Some(Duration::from_secs(3600));
    let sid = "CApgcross00000000000000000000001";
    let mut call = a.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(10).await;
    call.speak("explicit_billing_agent_joe/0.wav").await;
    // B sees A's card through PostgreSQL.
    let stored = {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            call.silence(5).await;
            let (status, v) = get_json(&b, &format!("/api/calls/{sid}")).await;
            if status == 200 && v["handoff"].is_object() {
                break v;
            }
            assert!(Instant::now() < until, "no card reached PostgreSQL: {v}");
        }
    };
    assert_eq!(stored["handoff"]["queue"], "billing", "{stored}");
    let target = stored["handoff"]["target"].as_str().unwrap().to_string();
    // The stream drops (no stop message); the provider's callback lands on B.
    drop(call);
    let (status, twiml) = b
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Dial>"), "{twiml}");
    assert!(
        twiml.contains(&format!(">{target}</Number>")),
        "B did not dial the billing queue ({target}): {twiml}"
    );
    // The fallback queue is another team: B did not get it right by falling back.
    assert_ne!(target, "+15550100000");
    let whisper_url = attr(&twiml, "Number", "url");
    assert!(whisper_url.starts_with(&b.base), "{whisper_url}");
    let (status, whisper) = b
        .post_signed(
            whisper_url.trim_start_matches(&b.base),
            &[("CallSid", "CAagent")],
        )
        .await;
    assert_eq!(status, 200, "{whisper}");
    let spoken = stored["handoff"]["spoken_summary"].as_str().unwrap();
    assert_eq!(unescape(&text_of(&whisper, "Say")), spoken);
    // And A, which never got the callback, serves the same whisper from the same store.
    let (status, from_a) = a
        .post_signed(
            whisper_url.trim_start_matches(&b.base),
            &[("CallSid", "CAagent")],
        )
        .await;
    assert_eq!((status, from_a), (200, whisper));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_either_instance_are_listed_by_both() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("listed");
    let a = instance(&url).await;
    let b = instance(&url).await;
    let mut sids = Vec::new();
    for (h, sid) in [
        (&a, "CApglistA0000000000000000000001"),
        (&b, "CApglistB0000000000000000000001"),
    ] {
        let mut call = h.open_call(sid).await;
        call.silence(5).await;
        call.seq += 1;
        call.send(json!({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": "0"}}))
            .await;
        h.wait_update(&mut call, sid, Duration::from_secs(10))
            .await
            .expect("a transfer");
        call.stop(sid).await;
        sids.push(sid);
    }
    for h in [&a, &b] {
        for sid in &sids {
            let rec = wait_record(h, sid, |v| v["outcome"] == "transferred").await;
            assert_eq!(rec["from"], "+15551230000", "{rec}");
            assert!(rec["handoff"].is_object(), "{rec}");
        }
        let (status, list) = get_json(h, "/api/calls").await;
        assert_eq!(status, 200);
        let listed: Vec<&str> = list["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["call_sid"].as_str())
            .collect();
        for sid in &sids {
            assert!(listed.contains(sid), "{sid} missing from {list}");
        }
        // Caller data stays behind the token on every instance.
        let r = h
            .http
            .get(format!("{}/api/calls", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_mid_call_still_transfers_counts_errors_and_catches_up() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let url = pg.create_db("outage");
    let a = instance(&url).await;
    let sid = "CApgoutage000000000000000000001";
    let mut call = a.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    wait_record(&a, sid, |v| v["from"] == "+15551230000").await;
    // The database goes away; the caller keeps talking and asks for a person.
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop_server();
        pg
    })
    .await
    .unwrap();
    call.silence(10).await;
    let asked = Instant::now();
    call.speak("explicit_billing_agent_joe/0.wav").await;
    let (twiml, at) = a
        .wait_update(&mut call, sid, Duration::from_secs(20))
        .await
        .expect("the call transfers with the database down");
    assert!(
        twiml.contains("<Dial>") && twiml.contains("+15550100001"),
        "{twiml}"
    );
    println!(
        "transfer {:?} after the turn began, database down",
        at - asked
    );
    call.stop(sid).await;
    // The writes queued meanwhile fail (each attempt waits at most a second for a
    // connection), are counted, and turn the instance's health to degraded.
    let until = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = metrics(&a).await;
        if metric_value(&m, "warmline_store_errors_total") >= 1.0 || Instant::now() > until {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metric_value(&m, "warmline_store_errors_total") >= 1.0,
        "{m}"
    );
    assert!(m.contains("warmline_store_ok 0"), "{m}");
    let health = a
        .http
        .get(format!("{}/healthz", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    // The database comes back on the same port: what waited is written, in order.
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || {
        pg.start_server();
        pg
    })
    .await
    .unwrap();
    let rec = wait_record(&a, sid, |v| {
        v["outcome"] == "transferred" && v["handoff"]["queue"] == "billing"
    })
    .await;
    assert!(
        rec["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["speaker"] == "caller"),
        "{rec}"
    );
    assert_eq!(rec["transfer"]["status"], "accepted", "{rec}");
    drop(pg);
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// kill -9 of an instance running as its own process.

struct Child9 {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_instance(url: &str, fake_addr: std::net::SocketAddr) -> Child9 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap().keep();
    let log = dir.join("server.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warmline"));
    cmd.arg("serve")
        .current_dir(common::root())
        .env("WARMLINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("WARMLINE_PUBLIC_URL", &base)
        .env("WARMLINE_DATA_DIR", &dir)
        .env("WARMLINE_DATABASE_URL", url)
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("WARMLINE_TWILIO_API_BASE", format!("http://{fake_addr}"))
        .env("WARMLINE_API_TOKENS", API_TOKEN)
        .env("RUST_LOG", "warmline=info,whisper_rs=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = cmd.spawn().expect("spawning warmline serve");
    let server = Child9 { child, base, log };
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await
            && r.status() == 200
        {
            return server;
        }
        assert!(
            Instant::now() < until,
            "instance not healthy: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_leaves_its_records_in_postgres_for_the_other_instance() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_db("killed");
    let (fake, fake_addr) = start_fake().await;
    let mut a = spawn_instance(&url, fake_addr).await;
    let ha = Harness::remote(a.base.clone(), fake.clone(), fake_addr);
    let b = instance(&url).await;
    let sid = "CApgkill9000000000000000000001";
    let mut call = ha.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(10).await;
    call.speak("selfserve_hours_sunday_joe/0.wav").await;
    // What A has stored so far, as B reads it from PostgreSQL.
    let before = {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            call.silence(5).await;
            let (status, v) = get_json(&b, &format!("/api/calls/{sid}")).await;
            if status == 200
                && v["transcript"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|l| l["speaker"] == "caller"))
            {
                break v;
            }
            assert!(Instant::now() < until, "no caller line stored: {v}");
        }
    };
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(a.child.id() as libc::pid_t, libc::SIGKILL);
    }
    let status = a.child.wait().unwrap();
    assert!(!status.success());
    drop(call);
    // Everything stored before the kill is there, read by a fresh connection.
    let after = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Store::connect(&url)
                .unwrap()
                .get_call("CApgkill9000000000000000000001")
                .unwrap()
                .unwrap()
        })
        .await
        .unwrap()
    };
    for line in before["transcript"].as_array().unwrap() {
        assert!(
            after["transcript"].as_array().unwrap().contains(line),
            "lost {line}"
        );
    }
    assert_eq!(after["from"], "+15551230000");
    // The provider's callback lands on B: a person, with what the caller said.
    let (status, twiml) = b
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Dial>"), "{twiml}");
    let whisper_url = attr(&twiml, "Number", "url");
    let (status, whisper) = b
        .post_signed(
            whisper_url.trim_start_matches(&b.base),
            &[("CallSid", "CAagent")],
        )
        .await;
    assert_eq!(status, 200, "{whisper}");
    let said = before["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|l| l["speaker"] == "caller")
        .and_then(|l| l["text"].as_str())
        .unwrap()
        .to_string();
    assert!(
        unescape(&text_of(&whisper, "Say")).contains(&said.chars().take(20).collect::<String>()),
        "the agent does not hear what the caller said: {whisper}"
    );
    let rec = record(&b, sid).await;
    assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
}

//! Opt-in recording end to end: a call over the real WebSocket with recording on is exported
//! (API and CLI), replayed through the engine with the real model, and must come out with the
//! live call's transcript and decisions; recording off leaves no audio; retention and
//! deletion work and caller data needs a token.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::twilio::{self, API_TOKEN, Call, Harness};
use warmline::recording::{self, Meta};
use warmline::replay::fixture::{Act, Fixture};
use warmline::replay::{Ending, check, sim};

async fn recording_server(configure: impl FnOnce(&mut warmline::config::Settings)) -> Harness {
    twilio::start_with(|s| {
        s.recording.enabled = true;
        configure(s);
    })
    .await
}

fn data_dir(h: &Harness) -> PathBuf {
    h.state().settings.data_dir.clone()
}

/// Ends the stream and waits until the recorder has closed the call's files.
async fn hang_up(h: &Harness, call: &mut Call, sid: &str) {
    call.stop(sid).await;
    let until = Instant::now() + Duration::from_secs(10);
    while h.state().recorder.is_live(sid) {
        assert!(Instant::now() < until, "recording of {sid} never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the stream has started and its recording (if any) has begun.
async fn until_live(h: &Harness, call: &mut Call, sid: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    while !h.state().recorder.is_live(sid) {
        assert!(Instant::now() < until, "{sid} was never recorded");
        call.silence(1).await;
    }
}

async fn press(call: &mut Call, digit: &str) {
    call.seq += 1;
    let msg = json!({"event": "dtmf", "sequenceNumber": call.seq.to_string(),
                     "streamSid": call.stream_sid, "dtmf": {"track": "inbound_track", "digit": digit}});
    call.send(msg).await;
}

/// A short call that ends in a transfer: a second of quiet, then 0.
async fn dtmf_call(h: &Harness, sid: &str) {
    let mut call = h.open_call(sid).await;
    call.silence(50).await;
    press(&mut call, "0").await;
    assert!(
        h.wait_update(&mut call, sid, Duration::from_secs(10))
            .await
            .is_some(),
        "pressing 0 transferred nobody"
    );
    hang_up(h, &mut call, sid).await;
}

async fn get_raw(h: &Harness, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut r = h.http.get(format!("{}{path}", h.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn delete(h: &Harness, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = h.http.delete(format!("{}{path}", h.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Unpacks a fixture zip into `dir` (laid out like `fixtures/`).
fn unzip(bytes: &[u8], dir: &Path) -> Vec<String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.enclosed_name().expect("no path escapes in the zip");
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        std::fs::write(&path, buf).unwrap();
        names.push(name.to_string_lossy().into_owned());
    }
    names.sort();
    names
}

fn caller_lines(transcript: &[Value]) -> Vec<String> {
    transcript
        .iter()
        .filter(|l| l["speaker"] == "caller")
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect()
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // The server's sweeper may remove a directory between listing and reading it.
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn warmline(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(args)
        .env("WARMLINE_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .current_dir(common::root())
        .output()
        .unwrap()
}

/// The replay tests compare a live call with its replay, and a live call's turns depend on how
/// long its transcriptions take: two of them at once on a small machine slow each other's
/// Whisper and change where the live call's turns end. So they run one at a time.
static ONE_LIVE_CALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_exports_and_replays_to_the_same_transcript_and_decisions() {
    let _alone = ONE_LIVE_CALL.lock().await;
    let h = recording_server(|_| {}).await;
    let sid = "CArecordedreplay0001";
    let mut call = h.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(30)).await;
    call.silence(35).await;
    call.speak("billing_refund_joe/0.wav").await;
    assert!(
        h.wait_update(&mut call, sid, Duration::from_secs(20))
            .await
            .is_some(),
        "the live call was never transferred"
    );
    hang_up(&h, &mut call, sid).await;

    // What the live call did, from its stored record.
    let (status, live) = twilio::get_json(&h, &format!("/api/calls/{sid}")).await;
    assert_eq!(status, 200, "{live}");
    let live_transcript = live["transcript"].as_array().unwrap().clone();
    assert!(
        live_transcript[0]["text"]
            .as_str()
            .unwrap()
            .contains("This call may be recorded"),
        "recorded callers are told: {live_transcript:?}"
    );
    let live_callers = caller_lines(&live_transcript);
    let live_decisions: Vec<String> = live["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap().to_string())
        .collect();
    let live_card = live["handoff"].clone();
    assert_eq!(live_card["queue"], "billing", "{live}");

    // The recording: the audio the engine heard, at 8 kHz μ-law, and its timeline.
    let dir = data_dir(&h).join("recordings").join(sid);
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert!(meta.complete && meta.codec == "mulaw" && meta.sample_rate == 8000);
    let audio = std::fs::read(dir.join("caller.ulaw")).unwrap();
    let spoken = warmline::replay::fixture::read_ulaw(
        &common::root().join("fixtures/audio/billing_refund_joe/0.wav"),
    )
    .unwrap();
    assert!(
        audio.windows(spoken.len()).any(|w| w == spoken.as_slice()),
        "the caller's turn is in the recording byte for byte"
    );
    let timeline = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap();
    for kind in [
        "play",
        "mark",
        "utterance",
        "transcribed",
        "line",
        "handoff",
        "end",
    ] {
        assert!(
            timeline.contains(&format!("\"kind\":\"{kind}\"")),
            "no {kind} in the timeline:\n{timeline}"
        );
    }

    // Export through the API: caller data, so a token is needed.
    let path = format!("/api/calls/{sid}/fixture");
    assert_eq!(get_raw(&h, &path, None).await.0, 401);
    let (status, zip) = get_raw(&h, &path, Some(API_TOKEN)).await;
    assert_eq!(status, 200);
    let out = tempfile::tempdir().unwrap();
    let names = unzip(&zip, out.path());
    let name = recording::export::default_name(sid);
    assert!(names.contains(&format!("calls/{name}.toml")), "{names:?}");
    let fixture = Fixture::load(&out.path().join(format!("calls/{name}.toml"))).unwrap();
    assert_eq!(fixture.greeting.as_deref(), Some("greeting_recorded"));
    // The turns hold every byte the engine was fed, in order.
    let replayed_audio: Vec<u8> = fixture
        .turns
        .iter()
        .flat_map(|t| match &t.act {
            Act::Speak { ulaw, .. } => ulaw.clone(),
            Act::Press(_) => Vec::new(),
        })
        .collect();
    let norm = |b: &u8| if *b == 0x7F { 0xFF } else { *b };
    let whole = audio.len() / 160 * 160;
    assert_eq!(
        replayed_audio.iter().map(norm).collect::<Vec<_>>(),
        audio[..whole].iter().map(norm).collect::<Vec<_>>()
    );
    assert!(fixture.expect.transfer);
    assert!(
        fixture.expect.facts.contains(&"44719".to_string()),
        "{:?}",
        fixture.expect
    );

    // Replayed through the engine, with the same model setup the server used.
    let stt = common::stt();
    let outcome = sim::run(&fixture, common::playbook(), stt.as_ref()).unwrap();
    let replay_callers: Vec<String> = outcome
        .transcript
        .iter()
        .filter(|l| l.speaker == warmline::call::Speaker::Caller)
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(replay_callers, live_callers, "same transcript");
    let replay_decisions: Vec<String> = outcome
        .decisions
        .iter()
        .map(|(_, d)| d.to_string())
        .collect();
    // The live call also records the caller's hang-up after the transfer; the replay ends
    // at the transfer.
    let live_until_transfer: Vec<String> = live_decisions
        .iter()
        .filter(|d| *d != "caller_hangup")
        .cloned()
        .collect();
    assert_eq!(replay_decisions, live_until_transfer, "same decisions");
    let Ending::Transferred(h2) = &outcome.ending else {
        panic!("the replay did not transfer: {:?}", outcome.ending)
    };
    let card = serde_json::to_value(&h2.card).unwrap();
    for key in ["queue", "reason", "priority", "facts", "intent"] {
        assert_eq!(
            card[key], live_card[key],
            "{key} differs from the live call"
        );
    }
    let misses = check(&fixture, &outcome);
    assert!(
        misses.is_empty(),
        "the pre-filled expectation fails: {misses:?}"
    );

    // Redacted, through the CLI: no number in the text, the utterance silenced.
    let cli = tempfile::tempdir().unwrap();
    let toml_path = cli.path().join("calls/shared.toml");
    let run = warmline(
        &data_dir(&h),
        &[
            "fixture",
            "from-call",
            sid,
            "--redact",
            "--out",
            toml_path.to_str().unwrap(),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{}", String::from_utf8_lossy(&run.stdout));
    let text = std::fs::read_to_string(&toml_path).unwrap();
    for secret in ["44719", "four four seven", "4 4 7"] {
        assert!(
            !text.contains(secret),
            "{secret} in the redacted fixture:\n{text}"
        );
    }
    let redacted = Fixture::load(&toml_path).unwrap();
    let ulaw: Vec<u8> = redacted
        .turns
        .iter()
        .flat_map(|t| match &t.act {
            Act::Speak { ulaw, .. } => ulaw.clone(),
            Act::Press(_) => Vec::new(),
        })
        .collect();
    assert_eq!(ulaw.len(), whole, "redaction keeps the length and timing");
    let at = audio
        .windows(spoken.len())
        .position(|w| w == spoken.as_slice())
        .unwrap();
    let voiced = &ulaw[at..at + spoken.len()];
    assert!(
        voiced.iter().all(|&b| b == 0xFF || b == 0x7F),
        "the spoken account number is silenced"
    );
    // Refuses to overwrite without --force.
    let again = warmline(
        &data_dir(&h),
        &[
            "fixture",
            "from-call",
            sid,
            "--out",
            toml_path.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_off_leaves_no_audio_in_the_data_dir() {
    let h = twilio::start().await;
    assert!(!h.state().settings.recording.enabled, "off by default");
    let sid = "CAnotrecorded0001";
    dtmf_call(&h, sid).await;
    let (status, record) = twilio::get_json(&h, &format!("/api/calls/{sid}")).await;
    assert_eq!(status, 200);
    let greeting = record["transcript"][0]["text"].as_str().unwrap();
    assert!(greeting.starts_with("Thanks for calling"), "{record}");
    assert!(!greeting.contains("recorded"), "{record}");
    for f in files_under(&data_dir(&h)) {
        assert!(f.starts_with("warmline.sqlite"), "{f} in the data dir");
    }
    let (status, _) = get_raw(&h, &format!("/api/calls/{sid}/fixture"), Some(API_TOKEN)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_s_call_is_deleted_on_request_through_the_api() {
    let h = recording_server(|_| {}).await;
    let sid = "CAdeleteme0001";
    let mut call = h.open_call(sid).await;
    until_live(&h, &mut call, sid).await;
    // Not while it is going on: the writer would bring it back.
    assert_eq!(
        delete(&h, &format!("/api/calls/{sid}"), Some(API_TOKEN))
            .await
            .0,
        409
    );
    call.silence(25).await;
    press(&mut call, "0").await;
    assert!(
        h.wait_update(&mut call, sid, Duration::from_secs(10))
            .await
            .is_some()
    );
    hang_up(&h, &mut call, sid).await;
    let dir = data_dir(&h).join("recordings").join(sid);
    assert!(dir.join("caller.ulaw").exists());
    let timeline = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap();
    assert!(
        timeline.contains(r#""kind":"dtmf","digit":"0""#),
        "{timeline}"
    );

    let path = format!("/api/calls/{sid}");
    let (status, _) = delete(&h, &path, None).await;
    assert_eq!(status, 401);
    let (status, _) = delete(&h, &path, Some("not-the-token")).await;
    assert_eq!(status, 401);
    assert!(dir.exists(), "a refused delete deletes nothing");

    let (status, body) = delete(&h, &path, Some(API_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["record_deleted"], true);
    assert_eq!(body["audio_deleted"], true);
    assert!(!dir.exists());
    assert_eq!(twilio::get_json(&h, &path).await.0, 404);
    assert_eq!(delete(&h, &path, Some(API_TOKEN)).await.0, 404);
    // An id that could name another directory is not one.
    assert_eq!(
        delete(&h, "/api/calls/..%2Frecordings", Some(API_TOKEN))
            .await
            .0,
        404
    );
    assert!(data_dir(&h).join("recordings").exists());
}

#[test]
fn a_caller_s_call_is_deleted_on_request_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let store = warmline::store::Store::open(tmp.path()).unwrap();
    store
        .begin_call(
            "CAcli0001",
            "+15551230000",
            "+15550009000",
            "2026-01-01T09:00:00Z",
        )
        .unwrap();
    let dir = tmp.path().join("recordings/CAcli0001");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("caller.ulaw"), [0xFFu8; 1600]).unwrap();
    drop(store);

    let run = warmline(tmp.path(), &["calls", "delete", "CAcli0001"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!dir.exists());
    let store = warmline::store::Store::open(tmp.path()).unwrap();
    assert!(store.get_call("CAcli0001").unwrap().is_none());
    // Nothing left to delete, or an id that is not one: exit 1, no panic.
    assert_eq!(
        warmline(tmp.path(), &["calls", "delete", "CAcli0001"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        warmline(tmp.path(), &["calls", "delete", "../x"])
            .status
            .code(),
        Some(1)
    );
}

fn plant(root: &Path, sid: &str, days_old: i64, bytes: usize) {
    let dir = root.join(sid);
    std::fs::create_dir_all(&dir).unwrap();
    let meta = json!({
        "call_sid": sid,
        "started_at": (chrono::Utc::now() - chrono::Duration::days(days_old)).to_rfc3339(),
        "codec": "mulaw", "sample_rate": 8000, "greeting": "greeting_recorded",
        "complete": true, "outcome": "transferred"
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    std::fs::write(dir.join("caller.ulaw"), vec![0xFFu8; bytes]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sweeps_recordings_by_age_and_total_size() {
    let h = recording_server(|s| {
        s.recording.sweep_seconds = 1;
        s.recording.max_age_days = 30;
        s.recording.max_total_mb = 1;
    })
    .await;
    let root = data_dir(&h).join("recordings");
    plant(&root, "CAancient", 60, 1_000);
    plant(&root, "CAolder", 2, 600_000);
    plant(&root, "CAnewer", 1, 600_000);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = files_under(&root)
            .into_iter()
            .filter(|f| f.ends_with("caller.ulaw"))
            .collect();
        if left == ["CAnewer/caller.ulaw"] {
            break;
        }
        assert!(
            Instant::now() < until,
            "still there after the sweeps: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The caller talks over the greeting: the replay must cut the greeting at the same point
/// of the call (a barge-in is a matter of timing, so this is where a replay on the wrong
/// clock goes wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_talked_over_the_greeting_replays_with_the_same_barge_in() {
    let _alone = ONE_LIVE_CALL.lock().await;
    let h = recording_server(|_| {}).await;
    let sid = "CArecordedbargein01";
    let mut call = h.open_call(sid).await;
    call.silence(50).await;
    call.speak("barge_in_billing_joe/0.wav").await;
    assert!(
        h.wait_update(&mut call, sid, Duration::from_secs(20))
            .await
            .is_some(),
        "the live call was never transferred"
    );
    hang_up(&h, &mut call, sid).await;
    assert!(
        call.received.iter().any(|e| e == "clear"),
        "the live call barged in"
    );
    let (_, live) = twilio::get_json(&h, &format!("/api/calls/{sid}")).await;
    let live_decisions: Vec<String> = live["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap().to_string())
        .filter(|d| d != "caller_hangup")
        .collect();
    assert_eq!(
        live_decisions.first().map(String::as_str),
        Some("barge_in"),
        "{live}"
    );

    let out = tempfile::tempdir().unwrap();
    let name = "talked_over_greeting";
    let exported =
        recording::export::export(&data_dir(&h), sid, name, &h.state().settings.audio, false)
            .unwrap();
    let path = out.path().join(format!("calls/{name}.toml"));
    exported.write(&path).unwrap();
    let fixture = Fixture::load(&path).unwrap();
    assert_eq!(fixture.expect.barge_in, Some(true));
    assert!(
        fixture.turns.iter().any(|t| t.during_prompt),
        "the spoken turn is marked as over a prompt"
    );
    let stt = common::stt();
    let outcome = sim::run(&fixture, common::playbook(), stt.as_ref()).unwrap();
    let replay_callers: Vec<String> = outcome
        .transcript
        .iter()
        .filter(|l| l.speaker == warmline::call::Speaker::Caller)
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(
        replay_callers,
        caller_lines(live["transcript"].as_array().unwrap())
    );
    let replay_decisions: Vec<String> = outcome
        .decisions
        .iter()
        .map(|(_, d)| d.to_string())
        .collect();
    assert_eq!(replay_decisions, live_decisions, "same decisions");
    assert_eq!(outcome.clears, 1);
    let Ending::Transferred(handoff) = &outcome.ending else {
        panic!("the replay did not transfer: {:?}", outcome.ending)
    };
    assert_eq!(
        handoff.card.queue,
        live["handoff"]["queue"].as_str().unwrap()
    );
    assert_eq!(
        handoff.card.reason,
        live["handoff"]["reason"].as_str().unwrap()
    );
    let misses = check(&fixture, &outcome);
    assert!(misses.is_empty(), "{misses:?}");
}

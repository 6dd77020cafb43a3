//! The attack suite, against `warmline serve` as its own process: what needs a process
//! boundary — a lowered open-files limit under connection floods and slowloris, unauthenticated
//! log flooding, kill -9 mid-call and a restart, SIGTERM while the REST API hangs, and a disk
//! that fills up mid-call. Each asserts what an operator would check: the server stays
//! healthy, other calls are unaffected, callers reach a person, nothing stored is lost, and
//! file descriptors return to baseline. Loopback only; every wait is bounded.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::twilio::*;

/// `warmline serve` in a child process with its own limits.
struct Server {
    child: Child,
    base: String,
    data_dir: PathBuf,
    log: PathBuf,
}

struct Spawn<'a> {
    fake_addr: std::net::SocketAddr,
    data_dir: Option<PathBuf>,
    /// Hard and soft RLIMIT_NOFILE for the server.
    nofile: Option<u64>,
    /// `[limits]` and other settings, as TOML.
    config: &'a str,
    /// Reuse this port (a restart).
    port: Option<u16>,
}

impl Spawn<'static> {
    /// A plain server: fresh data dir, no fd limit, default settings, any port.
    fn plain(fake_addr: std::net::SocketAddr) -> Spawn<'static> {
        Spawn {
            fake_addr,
            data_dir: None,
            nofile: None,
            config: "",
            port: None,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    async fn spawn(opts: Spawn<'_>) -> Server {
        let port = opts.port.unwrap_or_else(free_port);
        let data_dir = opts
            .data_dir
            .unwrap_or_else(|| tempfile::tempdir().unwrap().keep());
        let config = data_dir.join("warmline-test.toml");
        std::fs::write(&config, opts.config).unwrap();
        // Outside the data dir, which a test may fill up.
        let log = tempfile::tempdir().unwrap().keep().join("server.log");
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warmline"));
        cmd.arg("--config")
            .arg(&config)
            .arg("serve")
            .current_dir(common::root())
            .env("WARMLINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("WARMLINE_PUBLIC_URL", &base)
            .env("WARMLINE_DATA_DIR", &data_dir)
            .env("TWILIO_ACCOUNT_SID", ACCOUNT)
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .env(
                "WARMLINE_TWILIO_API_BASE",
                format!("http://{}", opts.fake_addr),
            )
            .env(
                "WARMLINE_HANDOFF_WEBHOOK",
                format!("http://{}/handoff", opts.fake_addr),
            )
            .env("WARMLINE_API_TOKENS", API_TOKEN)
            .env("RUST_LOG", "warmline=info,whisper_rs=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let nofile = opts.nofile;
        // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(n) = nofile {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // A file-size limit set later (a "full disk") must fail writes, not kill.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawning warmline serve");
        let server = Server {
            child,
            base,
            data_dir,
            log,
        };
        server.wait_healthy(Duration::from_secs(90)).await;
        server
    }

    async fn wait_healthy(&self, limit: Duration) {
        let http = reqwest::Client::new();
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server not healthy in {limit:?}:\n{}", self.log_text());
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, sig);
        }
    }

    /// Waits for the process to exit; its status, or None after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn harness(&self, fake: &Fake, fake_addr: std::net::SocketAddr) -> Harness {
        Harness::remote(self.base.clone(), fake.clone(), fake_addr)
    }

    fn stored(&self, sid: &str) -> Value {
        let store = warmline::store::Store::open(&self.data_dir).unwrap();
        store.get_call(sid).unwrap().expect("a stored record")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this test process's own open-files limit (the floods need more than 1024
/// sockets); returns how many flood sockets it can hold.
fn raise_own_fd_limit() -> usize {
    let own = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024) as usize;
    own.saturating_sub(300).min(1_400)
}

/// Sends DTMF 0 on a call while keeping its media flowing, until the fake Twilio sees the
/// transfer; the time it took, or None.
async fn press_zero_until_transfer(
    h: &Harness,
    call: &mut Call,
    sid: &str,
    limit: Duration,
) -> Option<Duration> {
    call.seq += 1;
    call.send(json!({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": "0"}}))
        .await;
    let pressed = Instant::now();
    h.wait_update(call, sid, limit)
        .await
        .map(|(_, at)| at.duration_since(pressed))
}

async fn health_ok(base: &str) -> bool {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    matches!(http.get(format!("{base}/healthz")).send().await, Ok(r) if r.status() == 200)
}

async fn metric(base: &str, series: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_and_slowloris_at_a_low_fd_limit_leave_calls_and_health_intact() {
    let flood = raise_own_fd_limit();
    let half_open = flood * 11 / 14;
    let (fake, fake_addr) = start_fake().await;
    let server = Server::spawn(Spawn {
        nofile: Some(256),
        config: "[limits]\nheader_read_ms = 1000\nidle_ms = 2000\n",
        ..Spawn::plain(fake_addr)
    })
    .await;
    let h = server.harness(&fake, fake_addr);
    let addr = server.base.trim_start_matches("http://").to_string();
    // A call already in progress when the flood starts.
    let sid_a = "CAprocflood000000000000000000001";
    let mut call_a = h.open_call(sid_a).await;
    call_a.silence(10).await;
    let fds_before = server.fds();
    let rss_before = server.rss_kb();

    // 1,100 half-open connections (nothing sent) and 300 slowloris ones (a header line
    // trickling in), more than the process has descriptors for.
    let mut held = Vec::new();
    for i in 0..flood {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            if i >= half_open {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
            }
            held.push(s);
        }
    }
    assert!(
        held.len() * 10 > flood * 9 && held.len() > 300,
        "only {} flood connections of {flood}",
        held.len()
    );
    assert!(server.fds() < 256, "server at {} fds of 256", server.fds());

    println!(
        "{} flood connections held; server at {} fds (limit 256), {} before",
        held.len(),
        server.fds(),
        fds_before
    );
    // Health answers, a new caller gets through, and the caller already in progress is
    // transferred — all while the flood is held open.
    assert!(
        health_ok(&server.base).await,
        "healthz failed under the flood"
    );
    let sid_b = "CAprocflood000000000000000000002";
    let mut call_b = h.open_call(sid_b).await;
    call_b.silence(5).await;
    let b = press_zero_until_transfer(&h, &mut call_b, sid_b, Duration::from_secs(10)).await;
    assert!(
        b.is_some(),
        "a new caller did not reach a person under the flood"
    );
    let a = press_zero_until_transfer(&h, &mut call_a, sid_a, Duration::from_secs(10)).await;
    assert!(a.is_some(), "the caller in progress did not reach a person");
    assert!(
        metric(
            &server.base,
            "warmline_connections_total{event=\"evicted\"}"
        )
        .await
            > 0
            || metric(
                &server.base,
                "warmline_connections_total{event=\"idle_closed\"}"
            )
            .await
                > 0
    );

    // The server let go of the attackers on its own (header-read and idle timeouts): every
    // held socket reads EOF or a reset.
    let mut closed = 0;
    let split = half_open.min(held.len());
    let (first, slow) = held.split_at_mut(split);
    for s in first.iter_mut().take(50).chain(slow.iter_mut().take(50)) {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 95,
        "only {closed}/100 attacker sockets were closed by the server"
    );
    drop(held);
    call_a.stop(sid_a).await;
    call_b.stop(sid_b).await;

    // Back to baseline.
    let until = Instant::now() + Duration::from_secs(10);
    while server.fds() > fds_before + 4 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server.fds() <= fds_before + 4,
        "fds {} after the flood, {fds_before} before",
        server.fds()
    );
    let rss_after = server.rss_kb();
    println!(
        "after: {} fds, RSS {rss_before} -> {rss_after} kB; evicted {}, idle-closed {}, refused {}",
        server.fds(),
        metric(
            &server.base,
            "warmline_connections_total{event=\"evicted\"}"
        )
        .await,
        metric(
            &server.base,
            "warmline_connections_total{event=\"idle_closed\"}"
        )
        .await,
        metric(
            &server.base,
            "warmline_connections_total{event=\"refused\"}"
        )
        .await,
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    let log = server.log_text();
    assert!(
        log.contains("open-files limit"),
        "no fd-limit line in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_frame_floods_cannot_fill_the_log() {
    let (_fake, fake_addr) = start_fake().await;
    let server = Server::spawn(Spawn::plain(fake_addr)).await;
    let url = format!("{}/twilio/media", server.base.replace("http://", "ws://"));
    let before = server.log_len();
    let started = Instant::now();
    let mut sent = 0u64;
    // Ten sockets at a time, reconnecting whenever the server cuts one off, for 5 s.
    while started.elapsed() < Duration::from_secs(5) {
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
                    return 0u64;
                };
                let mut n = 0;
                for _ in 0..2_000 {
                    if ws.send(Message::Text("{garbage".into())).await.is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            }));
        }
        for t in tasks {
            sent += t.await.unwrap_or(0);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grew = server.log_len() - before;
    println!("{sent} bad frames sent; log grew {grew} bytes");
    assert!(sent > 1_000, "only {sent} frames sent");
    // A line per second per warning site, whatever the attacker sends.
    assert!(grew < 20_000, "log grew {grew} bytes for {sent} bad frames");
    assert!(health_ok(&server.base).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_then_restart_keeps_what_was_said_for_the_agent() {
    let (fake, fake_addr) = start_fake().await;
    let mut server = Server::spawn(Spawn::plain(fake_addr)).await;
    let h = server.harness(&fake, fake_addr);
    let sid = "CAprockill0000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(10).await;
    // A question warmline answers itself: a transcript line, no handoff yet.
    call.speak("selfserve_hours_sunday_joe/0.wav").await;
    let (_, before) = loop_until_caller_line(&h, &mut call, sid).await;
    server.signal(libc::SIGKILL);
    assert!(server.wait_exit(Duration::from_secs(5)).is_some());
    drop(call);

    // Restarted on the same data dir and port: Twilio's <Connect action> lands here.
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let restarted = Server::spawn(Spawn {
        data_dir: Some(server.data_dir.clone()),
        port: Some(port),
        ..Spawn::plain(fake_addr)
    })
    .await;
    let (status, twiml) = h
        .post_signed(
            "/twilio/stream-ended",
            &[("CallSid", sid), ("AccountSid", ACCOUNT)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Dial>"), "{twiml}");
    let whisper_url = attr(&twiml, "Number", "url");
    let path = whisper_url.trim_start_matches(&restarted.base).to_string();
    let (status, whisper) = h.post_signed(&path, &[("CallSid", "CAagent")]).await;
    assert_eq!(status, 200, "{whisper}");
    let unescape = |t: &str| {
        t.replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
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
    let (_, after) = get_json(&h, &format!("/api/calls/{sid}")).await;
    // Nothing stored before the kill is lost.
    for line in before["transcript"].as_array().unwrap() {
        assert!(
            after["transcript"].as_array().unwrap().contains(line),
            "lost {line}"
        );
    }
    assert_eq!(after["handoff"]["reason"], "system_fault", "{after}");
}

/// Streams silence until the stored record shows a caller line; returns the record.
async fn loop_until_caller_line(h: &Harness, call: &mut Call, sid: &str) -> (u16, Value) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        call.silence(5).await;
        let (status, rec) = get_json(h, &format!("/api/calls/{sid}")).await;
        let has_line = rec["transcript"]
            .as_array()
            .is_some_and(|t| t.iter().any(|l| l["speaker"] == "caller"));
        if has_line {
            return (status, rec);
        }
        assert!(Instant::now() < until, "no caller line stored: {rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_rest_hangs_hands_over_refuses_newcomers_and_exits_in_bound() {
    let (fake, fake_addr) = start_fake().await;
    *fake.hang.lock().unwrap() = Some(Duration::from_secs(3600));
    let mut server = Server::spawn(Spawn {
        config: "[limits]\ndrain_ms = 15000\n",
        ..Spawn::plain(fake_addr)
    })
    .await;
    let h = server.harness(&fake, fake_addr);
    let sid = "CAprocterm0000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(10).await;
    server.signal(libc::SIGTERM);
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.assert_newcomer_goes_to_a_person("CAlate").await;
    // Keep reading so the server is not blocked on us; it closes the stream once the REST
    // budget is spent.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = call.ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let s = server.wait_exit(Duration::from_secs(17));
        (s, server)
    })
    .await
    .unwrap();
    let (exit, server) = status;
    let took = sent.elapsed();
    let exit = exit.unwrap_or_else(|| panic!("did not exit:\n{}", server.log_text()));
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    let rec = server.stored(sid);
    assert_eq!(rec["handoff"]["reason"], "system_fault", "{rec}");
    assert_eq!(rec["transfer"]["status"], "failed", "{rec}");
    assert_eq!(rec["outcome"], "transfer_failed", "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_mid_call_is_reported_and_the_caller_still_reaches_a_person() {
    let (fake, fake_addr) = start_fake().await;
    let server = Server::spawn(Spawn::plain(fake_addr)).await;
    let h = server.harness(&fake, fake_addr);
    // The disk is "full" from now on: no file of the server's may grow past its size.
    let largest = largest_file(&server.data_dir);
    rlimit::prlimit(
        server.pid() as i32,
        rlimit::Resource::FSIZE,
        Some((largest, largest)),
        None,
    )
    .unwrap();
    let sid = "CAprocdisk0000000000000000000001";
    let mut call = h.open_call(sid).await;
    call.silence(10).await;
    let took = press_zero_until_transfer(&h, &mut call, sid, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "the caller did not reach a person with the disk full"
    );
    assert!(metric(&server.base, "warmline_store_errors_total").await > 0);
    assert_eq!(metric(&server.base, "warmline_store_ok").await, 0);
    let r = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.unwrap().contains("call records"));
    // A second caller is not affected either.
    let sid2 = "CAprocdisk0000000000000000000002";
    let mut call2 = h.open_call(sid2).await;
    call2.silence(5).await;
    assert!(
        press_zero_until_transfer(&h, &mut call2, sid2, Duration::from_secs(10))
            .await
            .is_some()
    );
}

fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
        .max(1)
}

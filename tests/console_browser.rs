//! The console as a person sees it: headless Chromium against the real server with simulated
//! Twilio calls (real WebSockets, the real model), plus plain HTTP checks that no console
//! route shows caller data without a session.
//!
//! Set `WARMLINE_CONSOLE_SCREENSHOTS=docs/console` to (re)write the README's screenshots.

#[path = "console_browser/cdp.rs"]
mod cdp;
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::twilio::*;
use warmline::config::{ConsoleRole, ConsoleUser};

const ADMIN: (&str, &str) = ("olu", "olu-correct-horse-battery");
const AGENT: (&str, &str) = ("ana", "ana-staple-lantern-river");

fn users() -> Vec<ConsoleUser> {
    [(ADMIN, ConsoleRole::Admin), (AGENT, ConsoleRole::Agent)]
        .into_iter()
        .map(|((name, password), role)| ConsoleUser {
            name: name.into(),
            role,
            password_hash: warmline::server::console::hash_password(password).unwrap(),
        })
        .collect()
}

async fn console_server() -> Harness {
    start_with(|s| s.console.users = users()).await
}

/// A caller who waits for the greeting, says `audio`, is transferred, and hangs up.
async fn caller(h: Arc<Harness>, sid: &'static str, audio: &'static str) -> Instant {
    let mut call = h.open_call(sid).await;
    call.until_prompt_done(Duration::from_secs(15)).await;
    call.silence(25).await;
    call.speak(audio).await;
    let (_, at) = h
        .wait_update(&mut call, sid, Duration::from_secs(20))
        .await
        .expect("a transfer");
    call.silence(10).await;
    call.stop(sid).await;
    at
}

async fn log_in(page: &cdp::Page<'_>, name: &str, password: &str) {
    page.eval(&format!(
        "(() => {{ const f = document.getElementById('login');
            f.name.value = {name:?}; f.password.value = {password:?}; f.requestSubmit(); }})()"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let Some(chromium) = cdp::find_chromium() else {
        println!(
            "SKIPPED console_in_a_real_browser: no Chromium found (install Debian's `chromium` \
             or set CHROMIUM=/path/to/chrome)"
        );
        return;
    };
    let shots = std::env::var_os("WARMLINE_CONSOLE_SCREENSHOTS").map(PathBuf::from);
    let shot = |name: &str| shots.as_ref().map(|d| d.join(name));
    let h = Arc::new(console_server().await);
    let browser = cdp::Browser::launch(&chromium).await;
    let page = browser.page(1100, 760).await;
    let wait = Duration::from_secs(10);

    // Without a session the console sends people to its login page.
    page.goto(&format!("{}/console", h.base)).await;
    page.wait_for("location.pathname === '/console/login'", wait)
        .await;
    if let Some(p) = shot("login.png") {
        page.screenshot(&p).await;
    }

    // A wrong password is refused, and the browser gets no access to anything.
    log_in(&page, ADMIN.0, "not-the-password").await;
    page.wait_for(
        "document.readyState === 'complete' && document.querySelector('.error') \
         && document.querySelector('.error').textContent.includes('Wrong name or password')",
        wait,
    )
    .await;
    assert_eq!(page.eval("location.pathname").await, "/console/login");
    assert_eq!(
        page.eval("fetch('/console/api/calls').then(r => r.status)")
            .await,
        401
    );

    log_in(&page, ADMIN.0, ADMIN.1).await;
    page.wait_for("document.getElementById('board')", wait)
        .await;
    page.wait_for(
        "document.getElementById('feed').classList.contains('on')",
        wait,
    )
    .await;

    // Two callers at once: one angry about a double charge, one who asks for a person.
    let angry = "CAconsoleangry000000000000000001";
    let agent = "CAconsoleagent000000000000000002";
    let a = tokio::spawn(caller(h.clone(), angry, "angry_furious_billing_joe/0.wav"));
    let b = tokio::spawn(caller(h.clone(), agent, "explicit_agent_kal/0.wav"));
    let card = |sid: &str| format!("document.querySelector('[data-call=\"{sid}\"]')");

    // The call appears with the greeting as it is played...
    page.wait_for(
        &format!(
            "{} && {}.querySelectorAll('li.system').length >= 1",
            card(angry),
            card(angry)
        ),
        wait,
    )
    .await;
    // ...and a page opened mid-call shows the call so far, then follows it.
    page.goto(&format!("{}/console#/live", h.base)).await;
    page.wait_for(
        &format!(
            "{} && {}.querySelectorAll('li.system').length >= 1",
            card(angry),
            card(angry)
        ),
        wait,
    )
    .await;
    assert_eq!(
        page.eval(&format!(
            "{}.querySelectorAll('li.caller').length",
            card(angry)
        ))
        .await,
        0,
        "the caller has not spoken yet"
    );
    page.wait_for(
        &format!(
            "{} && {}.querySelector('li.caller') && \
             {}.querySelector('li.caller').textContent.includes('furious')",
            card(angry),
            card(angry),
            card(angry)
        ),
        Duration::from_secs(30),
    )
    .await;
    let tone = page
        .eval(&format!(
            "{}.querySelector('[data-tone]').dataset.tone",
            card(angry)
        ))
        .await;
    assert!(
        tone == "angry" || tone == "frustrated",
        "tone meter shows {tone}"
    );
    if let Some(p) = shot("live.png") {
        page.screenshot(&p).await;
    }
    let seen_transferring = page
        .wait_for(
            &format!(
                "['transferring', 'ended'].includes({}.querySelector('[data-state]').dataset.state)",
                card(angry)
            ),
            Duration::from_secs(20),
        )
        .await;
    page.wait_for(
        &format!(
            "{} && {}.querySelector('li.caller') && {}.querySelector('[data-requests]').dataset.requests >= 1",
            card(agent),
            card(agent),
            card(agent)
        ),
        Duration::from_secs(30),
    )
    .await;
    let transferred_at = a.await.unwrap();
    b.await.unwrap();
    // The handoff is stored (and shown) before the transfer request goes out.
    let lag = seen_transferring.saturating_duration_since(transferred_at);
    println!("board showed the transfer {lag:?} after the REST request");
    assert!(lag < Duration::from_millis(500), "{lag:?}");

    // The handoff card, as the agent sees it on pickup.
    let (_, record) = get_json(&h, &format!("/api/calls/{angry}")).await;
    let stored = &record["handoff"];
    page.eval(&format!("location.hash = '#/call/{angry}'"))
        .await;
    page.wait_for("document.getElementById('summary')", wait)
        .await;
    let text = |id: &str| format!("document.getElementById('{id}').textContent");
    assert_eq!(page.eval(&text("summary")).await, stored["summary"]);
    assert_eq!(
        page.eval("document.querySelector('[data-fact=account_number] .v').textContent")
            .await,
        "44719"
    );
    let priority = page.eval(&text("priority")).await;
    assert!(
        priority
            .as_str()
            .unwrap()
            .starts_with(stored["priority"].as_str().unwrap()),
        "{priority}"
    );
    assert_eq!(
        page.eval(&text("reason")).await,
        stored["reason"].as_str().unwrap().replace('_', " ")
    );
    assert!(
        page.eval(&text("mood"))
            .await
            .as_str()
            .unwrap()
            .starts_with(stored["sentiment"]["label"].as_str().unwrap())
    );
    assert_eq!(page.eval(&text("spoken")).await, stored["spoken_summary"]);
    assert_eq!(page.eval(&text("outcome")).await, "transferred");
    if let Some(p) = shot("card.png") {
        page.screenshot(&p).await;
        page.resize(390, 844).await;
        page.screenshot(&p.with_file_name("card-phone.png")).await;
        page.resize(1100, 760).await;
    }

    // History: both calls; a filter on the angry call's reason narrows it to that one.
    page.eval("location.hash = '#/history'").await;
    page.wait_for("document.querySelectorAll('tr.row').length === 2", wait)
        .await;
    let reason = stored["reason"].as_str().unwrap();
    page.eval(&format!(
        "(() => {{ const f = document.getElementById('filters'); f.reason.value = {reason:?};
            f.requestSubmit(); }})()"
    ))
    .await;
    page.wait_for(
        &format!(
            "document.querySelectorAll('tr.row').length === 1 && \
             document.querySelector('tr.row').dataset.call === '{angry}'"
        ),
        wait,
    )
    .await;
    // Text search in transcripts.
    page.eval("location.hash = '#/history?q=speak%20with%20an%20agent'")
        .await;
    page.wait_for(
        &format!(
            "document.querySelectorAll('tr.row').length === 1 && \
             document.querySelector('tr.row').dataset.call === '{agent}'"
        ),
        wait,
    )
    .await;
    page.eval("location.hash = '#/history'").await;
    page.wait_for("document.querySelectorAll('tr.row').length === 2", wait)
        .await;
    if let Some(p) = shot("history.png") {
        page.screenshot(&p).await;
    }

    // Trends (admins): both escalations charted.
    page.eval("location.hash = '#/trends?days=1'").await;
    page.wait_for(
        "document.querySelectorAll('.chart svg rect').length >= 3",
        wait,
    )
    .await;
    if let Some(p) = shot("trends.png") {
        page.screenshot(&p).await;
    }
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn log_in_http(h: &Harness, client: &reqwest::Client, who: (&str, &str)) -> String {
    let r = client
        .post(format!("{}/console/login", h.base))
        .header("Origin", &h.base)
        .form(&[("name", who.0), ("password", who.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "served over http: {cookie}");
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_console_route_shows_caller_data_without_a_session() {
    let h = console_server().await;
    let secret_number = "+15557654321";
    let secret_words = "my account is 99887";
    let sid = "CAsecret000000000000000000000001";
    let store = &h.state().store;
    store
        .begin_call(
            sid,
            secret_number,
            "+15550009000",
            "2026-01-01T09:00:00+00:00",
        )
        .unwrap();
    store
        .add_line(sid, 1200, "caller", secret_words, Some(0.9), None)
        .unwrap();
    let client = plain_client();
    let routes = [
        "/console",
        "/console/",
        "/console/api/me",
        "/console/api/live",
        "/console/api/calls",
        "/console/api/calls?q=99887",
        &format!("/console/api/calls/{sid}"),
        "/console/api/trends",
        "/console/api/users",
    ];
    let forged = format!("warmline_console={}", "ab".repeat(32));
    for route in routes {
        for (how, req) in [
            ("no cookie", client.get(format!("{}{route}", h.base))),
            (
                "forged cookie",
                client
                    .get(format!("{}{route}", h.base))
                    .header("Cookie", &forged),
            ),
            (
                "API token (not a console session)",
                client
                    .get(format!("{}{route}", h.base))
                    .bearer_auth(API_TOKEN),
            ),
        ] {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap();
            assert!(
                status == 401 || (status == 303 && location.as_deref() == Some("/console/login")),
                "{route} with {how}: {status}"
            );
            assert!(
                !body.contains(secret_number) && !body.contains("99887"),
                "{route} with {how} leaked: {body}"
            );
        }
    }
    let r = client
        .post(format!("{}/console/api/users/{}/revoke", h.base, ADMIN.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A login form posted from another site is refused before the password is looked at.
    let r = client
        .post(format!("{}/console/login", h.base))
        .header("Origin", "https://evil.example")
        .form(&[("name", ADMIN.0), ("password", ADMIN.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    // An agent sees calls, not trends or users.
    let agent = log_in_http(&h, &client, AGENT).await;
    let get = |path: &str, cookie: &str| {
        client
            .get(format!("{}{path}", h.base))
            .header("Cookie", cookie)
            .send()
    };
    let r = get(&format!("/console/api/calls/{sid}"), &agent)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("99887"));
    let r = get("/console/api/calls?q=ACCOUNT%20IS%2099887", &agent)
        .await
        .unwrap();
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["calls"].as_array().unwrap().len(), 1, "{found}");
    let r = get("/console/api/calls?q=100%25", &agent).await.unwrap();
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["calls"].as_array().unwrap().len(), 0, "{found}");
    for admin_only in ["/console/api/trends", "/console/api/users"] {
        assert_eq!(get(admin_only, &agent).await.unwrap().status(), 403);
    }
    // The live feed opens with a snapshot for a session, and closes when an admin ends
    // that person's sessions; the cookie then opens nothing.
    let mut r = get("/console/api/live", &agent).await.unwrap();
    assert_eq!(r.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("event: snapshot"),
        "{first:?}"
    );
    let admin = log_in_http(&h, &client, ADMIN).await;
    let csrf = get("/console/api/me", &admin)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let revoke = |csrf: String| {
        client
            .post(format!("{}/console/api/users/{}/revoke", h.base, AGENT.0))
            .header("Cookie", &admin)
            .header("Origin", &h.base)
            .header("X-CSRF-Token", csrf)
            .send()
    };
    assert_eq!(revoke("wrong".into()).await.unwrap().status(), 403);
    let ended: Value = revoke(csrf).await.unwrap().json().await.unwrap();
    assert_eq!(ended["ended"], 1);
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(Some(_)) = r.chunk().await {}
    })
    .await;
    assert!(closed.is_ok(), "the live feed outlived its session");
    assert_eq!(get("/console/api/me", &agent).await.unwrap().status(), 401);
    let agent = log_in_http(&h, &client, AGENT).await;

    // Logging out needs the session's CSRF token; then the cookie opens nothing.
    let me: Value = get("/console/api/me", &agent)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logout = |csrf: &str| {
        client
            .post(format!("{}/console/logout", h.base))
            .header("Cookie", &agent)
            .header("Origin", &h.base)
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(logout("wrong").await.unwrap().status(), 403);
    assert_eq!(get("/console/api/me", &agent).await.unwrap().status(), 200);
    assert_eq!(
        logout(me["csrf"].as_str().unwrap()).await.unwrap().status(),
        303
    );
    assert_eq!(get("/console/api/me", &agent).await.unwrap().status(), 401);

    // Guessing is limited per client address.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = client
            .post(format!("{}/console/login", h.base))
            .form(&[("name", ADMIN.0), ("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
}

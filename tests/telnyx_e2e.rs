//! Telnyx end to end over real sockets: a signed `call.initiated` answered through a fake
//! Call Control API with a bidirectional stream; the stream spoken as Telnyx speaks it
//! (`connected`, `start` with the `client_state` token, `media`, `dtmf`, `mark` echoes, `stop`);
//! barge-in clears; a transfer to the dialplan target with the agent's summary as `audio_url`
//! and the card delivered; a dropped stream failing open to a person with the card; forged and
//! stale signatures refused with nothing admitted.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::telnyx::{
    FakeTelnyx, Stream, event, initiated, post_event, post_signed, signing_key, telnyx_line,
    unix_now,
};
use common::twilio::{Harness, get_json, metrics};

/// The dialplan's general queue, where an explicit request and the fallback both go.
const GENERAL: &str = "+15550100000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telnyx_call_barges_in_and_is_transferred_with_the_summary_audio_and_card() {
    let (h, fake) = telnyx_line().await;
    let call = "v3:telnyx-e2e-call-0001";
    let mut s = Stream::open(&h, &fake, call).await;
    s.silence(50).await;
    assert!(s.saw("media"), "no greeting: {:?}", s.events);
    // Talking over the greeting clears it.
    s.speak("barge_in_agent_joe/0.wav").await;
    assert!(
        s.saw("clear"),
        "no clear: {:?}",
        s.events
            .iter()
            .filter(|e| *e != "media")
            .collect::<Vec<_>>()
    );
    let until = Instant::now() + Duration::from_secs(15);
    while !fake.actions_for(call).contains(&"transfer".to_string()) {
        assert!(
            Instant::now() < until,
            "no transfer: {:?}",
            fake.actions_for(call)
        );
        s.silence(5).await;
    }
    let stop = fake
        .wait_for(call, "streaming_stop", Duration::from_secs(5))
        .await
        .expect("the stream is stopped after the transfer");
    assert!(stop.body["command_id"].is_string());
    s.stop().await;
    // The caller hears where they are going, then the transfer, then the stream stops.
    assert_eq!(
        fake.actions_for(call),
        ["answer", "speak", "transfer", "streaming_stop"]
    );
    let commands = fake.commands_for(call);
    let transfer = &commands[2].body;
    assert_eq!(transfer["to"], GENERAL);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, rec) = get_json(&h, &format!("/api/calls/{call}")).await;
    assert_eq!(rec["handoff"]["reason"], "explicit_request", "{rec}");
    assert_eq!(rec["outcome"], "transferred", "{rec}");
    assert_eq!(rec["from"], "+15551230000");
    let handoff_id = rec["handoff"]["handoff_id"].as_str().unwrap();
    assert_eq!(
        transfer["audio_url"],
        format!("{}/audio/summary/{handoff_id}.wav", h.base)
    );
    assert!(
        commands[1].body["payload"]
            .as_str()
            .unwrap()
            .contains("someone"),
        "{:?}",
        commands[1]
    );
    // The written card reached the handoff webhook.
    let cards = h.fake.seen.lock().unwrap().cards.clone();
    assert!(
        cards
            .iter()
            .any(|c| c["call_sid"] == call && c["queue"] == "general"),
        "{cards:?}"
    );
    // Telnyx then reports the stream stopped: an accepted transfer is not repeated.
    assert_eq!(
        post_event(&h, "streaming.stopped", json!({"call_control_id": call})).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.actions_for(call)
            .iter()
            .filter(|a| *a == "transfer")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_stale_webhooks_are_refused_and_admit_nothing() {
    let (h, fake) = telnyx_line().await;
    let call = "v3:telnyx-e2e-forged";
    let body = event("call.initiated", initiated(call));
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    assert_eq!(
        post_signed(&h, &body, &other, unix_now()).await,
        403,
        "wrong key"
    );
    assert_eq!(
        post_signed(&h, &body, &signing_key(), unix_now() - 400).await,
        403,
        "stale"
    );
    assert_eq!(
        post_signed(&h, &body, &signing_key(), unix_now() + 400).await,
        403,
        "future"
    );
    let unsigned = h
        .http
        .post(format!("{}/telnyx/call", h.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    // A body changed after signing.
    let ts = unix_now().to_string();
    let sig = warmline::telephony::telnyx::signature::sign(&signing_key(), &ts, body.as_bytes());
    let tampered = h
        .http
        .post(format!("{}/telnyx/call", h.base))
        .header("telnyx-timestamp", &ts)
        .header("telnyx-signature-ed25519", sig)
        .body(body.replace("+15551230000", "+15559999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status().as_u16(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.commands_for(call).is_empty(),
        "{:?}",
        fake.commands_for(call)
    );
    // Nothing was reserved: a stream claiming the call is cut off before any audio.
    let url = format!("{}/telnyx/media", h.base.replace("http://", "ws://"));
    let mut s = Stream::connect(&url, call, "Z3Vlc3M=").await;
    s.silence(10).await;
    assert!(s.saw("closed") && !s.saw("media"), "{:?}", s.events);
    let m = common::twilio::metrics(&h).await;
    assert!(m.contains("bad_signature"), "{m}");
}

/// Opens a call's stream, presses 0 and waits (at most 5 s) until warmline asks Telnyx to
/// transfer it; the stream stays open for what the test does next.
async fn zero_until_transfer(h: &Harness, fake: &FakeTelnyx, call: &str) -> Stream {
    let mut s = Stream::open(h, fake, call).await;
    s.silence(5).await;
    s.dtmf('0').await;
    let until = Instant::now() + Duration::from_secs(5);
    while !fake.actions_for(call).contains(&"transfer".to_string()) {
        assert!(Instant::now() < until, "DTMF 0 did not transfer");
        s.silence(2).await;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_transfers_and_dropped_streams_and_refused_transfers_fail_open_to_a_person_with_the_card()
 {
    let (h, fake) = telnyx_line().await;
    // DTMF 0 asks for a person.
    let call = "v3:telnyx-e2e-dtmf";
    let s = zero_until_transfer(&h, &fake, call).await;
    drop(s);

    // The socket drops mid-call, no `stop`, no decision: the caller is transferred to the
    // fallback queue through Call Control, and the agent gets the card's summary.
    let call = "v3:telnyx-e2e-dropped";
    let mut s = Stream::open(&h, &fake, call).await;
    s.silence(10).await;
    drop(s);
    let transfer = fake
        .wait_for(call, "transfer", Duration::from_secs(5))
        .await
        .expect("a dropped stream fails open");
    assert_eq!(transfer.body["to"], GENERAL);
    let (_, rec) = get_json(&h, &format!("/api/calls/{call}")).await;
    let handoff_id = rec["handoff"]["handoff_id"]
        .as_str()
        .expect("a stored card");
    assert_eq!(
        transfer.body["audio_url"],
        format!("{}/audio/summary/{handoff_id}.wav", h.base)
    );
    assert_eq!(rec["outcome"], "stream_dropped", "{rec}");
    // Telnyx's own report of the stop does not transfer the caller a second time.
    assert_eq!(
        post_event(&h, "streaming.stopped", json!({"call_control_id": call})).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.actions_for(call)
            .iter()
            .filter(|a| *a == "transfer")
            .count(),
        1
    );

    // A stream that never connects: Telnyx's `streaming.failed` sends the caller to a person.
    let call = "v3:telnyx-e2e-never-connected";
    assert_eq!(post_event(&h, "call.initiated", initiated(call)).await, 200);
    fake.wait_for(call, "answer", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        post_event(&h, "streaming.failed", json!({"call_control_id": call})).await,
        200
    );
    let transfer = fake
        .wait_for(call, "transfer", Duration::from_secs(5))
        .await
        .expect("a failed stream fails open");
    assert_eq!(transfer.body["to"], GENERAL);

    // Telnyx refuses the transfer: the stream closes and the caller is transferred to the
    // fallback queue instead, with the card's summary for the agent.
    let call = "v3:telnyx-e2e-refused";
    let mut s = Stream::open(&h, &fake, call).await;
    s.silence(5).await;
    *fake.refuse_transfers.lock().unwrap() = 1;
    s.dtmf('0').await;
    let until = Instant::now() + Duration::from_secs(10);
    while fake
        .actions_for(call)
        .iter()
        .filter(|a| *a == "transfer")
        .count()
        < 2
    {
        assert!(
            Instant::now() < until,
            "no second transfer after the refusal: {:?}",
            fake.actions_for(call)
        );
        s.silence(2).await;
    }
    assert!(s.saw("closed"), "the stream stays open: {:?}", s.events);
    let transfers: Vec<_> = fake
        .commands_for(call)
        .into_iter()
        .filter(|c| c.action == "transfer")
        .collect();
    assert_ne!(
        transfers[0].body["command_id"],
        transfers[1].body["command_id"]
    );
    assert_eq!(transfers[1].body["to"], GENERAL);
    let (_, rec) = get_json(&h, &format!("/api/calls/{call}")).await;
    assert_eq!(rec["outcome"], "transfer_failed", "{rec}");
    let handoff_id = rec["handoff"]["handoff_id"].as_str().unwrap();
    assert_eq!(
        transfers[1].body["audio_url"],
        format!("{}/audio/summary/{handoff_id}.wav", h.base)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_line_answers_and_transfers_the_caller_straight_to_a_person() {
    let (h, fake) = common::telnyx::telnyx_line_with(|s| s.max_calls = 0).await;
    let call = "v3:telnyx-e2e-full";
    assert_eq!(post_event(&h, "call.initiated", initiated(call)).await, 200);
    let transfer = fake
        .wait_for(call, "transfer", Duration::from_secs(5))
        .await
        .expect("a caller warmline cannot take goes to a person");
    assert_eq!(transfer.body["to"], GENERAL);
    assert_eq!(fake.actions_for(call), ["answer", "speak", "transfer"]);
    let answer = &fake.commands_for(call)[0].body;
    assert!(answer.get("stream_url").is_none(), "{answer}");
}

/// After Telnyx accepted the transfer, the agent's leg can still fail (nobody answers within
/// `timeout_secs`, busy, rejected): Telnyx then sends `call.hangup` for that leg and keeps the
/// caller's leg up. warmline must not leave the caller there: it transfers them once more, to
/// the fallback queue, with the card's summary — and only once, and never after an agent
/// answered or the caller left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_agent_leg_sends_the_caller_to_the_fallback_queue_once_with_the_card() {
    let (h, fake) = telnyx_line().await;
    let transfers = |call: &str| -> Vec<Value> {
        fake.commands_for(call)
            .into_iter()
            .filter(|c| c.action == "transfer")
            .map(|c| c.body)
            .collect()
    };
    let first_transfer = |call: &'static str| {
        let (h, fake) = (&h, &fake);
        async move {
            let s = zero_until_transfer(h, fake, call).await;
            let t = fake
                .wait_for(call, "transfer", Duration::from_secs(1))
                .await
                .unwrap();
            (
                s,
                t.body["target_leg_client_state"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        }
    };

    // Nobody answers: the agent's leg hangs up with `timeout`.
    let call = "v3:telnyx-e2e-agent-leg-failed";
    let (s, leg_state) = first_transfer(call).await;
    let leg = json!({"call_control_id": "v3:agent-leg-1", "client_state": leg_state,
                     "hangup_cause": "timeout"});
    assert_eq!(post_event(&h, "call.initiated", leg.clone()).await, 200);
    assert_eq!(post_event(&h, "call.hangup", leg.clone()).await, 200);
    let until = Instant::now() + Duration::from_secs(5);
    while transfers(call).len() < 2 {
        assert!(
            Instant::now() < until,
            "caller left alone after the agent's leg failed: {:?}",
            fake.actions_for(call)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = transfers(call);
    assert_eq!(t[1]["to"], GENERAL);
    assert_ne!(t[0]["command_id"], t[1]["command_id"]);
    let actions = fake.actions_for(call);
    let second = actions.iter().rposition(|a| a == "transfer").unwrap();
    assert_eq!(
        actions[second - 1],
        "speak",
        "the caller is told first: {actions:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, rec) = get_json(&h, &format!("/api/calls/{call}")).await;
    let handoff_id = rec["handoff"]["handoff_id"]
        .as_str()
        .expect("a stored card");
    assert_eq!(
        t[1]["audio_url"],
        format!("{}/audio/summary/{handoff_id}.wav", h.base)
    );
    assert_eq!(rec["transfer"]["status"], "failed", "{rec}");
    assert!(
        metrics(&h)
            .await
            .contains(r#"warmline_transfer_failures_total{kind="agent_leg"} 1"#),
        "{}",
        metrics(&h).await
    );
    // The fallback's leg fails too: no third transfer (no loop).
    let leg2 = json!({"call_control_id": "v3:agent-leg-2",
                      "client_state": t[1]["target_leg_client_state"], "hangup_cause": "busy"});
    assert_eq!(post_event(&h, "call.hangup", leg2).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(transfers(call).len(), 2);
    drop(s);

    // An agent answered and later hung up: that is the end of a conversation.
    let call = "v3:telnyx-e2e-agent-leg-answered";
    let (s, leg_state) = first_transfer(call).await;
    let leg = json!({"call_control_id": "v3:agent-leg-3", "client_state": leg_state,
                     "hangup_cause": "normal_clearing"});
    assert_eq!(post_event(&h, "call.answered", leg.clone()).await, 200);
    assert_eq!(post_event(&h, "call.hangup", leg).await, 200);
    // The caller hung up while the agent's phone rang: nobody to transfer.
    let gone = "v3:telnyx-e2e-agent-leg-caller-gone";
    let (s2, gone_state) = first_transfer(gone).await;
    assert_eq!(
        post_event(&h, "call.hangup", json!({"call_control_id": gone})).await,
        200
    );
    let leg = json!({"call_control_id": "v3:agent-leg-4", "client_state": gone_state,
                     "hangup_cause": "originator_cancel"});
    assert_eq!(post_event(&h, "call.hangup", leg).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(transfers(call).len(), 1, "{:?}", fake.actions_for(call));
    assert_eq!(transfers(gone).len(), 1, "{:?}", fake.actions_for(gone));
    drop((s, s2));
}

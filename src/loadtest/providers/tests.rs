//! A tiny load test per provider against the in-process server and the real model: two
//! calls (a spoken request for a person and a press of 0) must both reach a person through
//! that provider's own transfer, and none may be lost.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::loadtest::{End, LoadtestOptions, Provider, Report, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn options(provider: Provider) -> LoadtestOptions {
    let fixtures: Vec<PathBuf> = ["explicit_agent_kal", "dtmf_zero_first_joe"]
        .iter()
        .map(|f| root().join(format!("fixtures/calls/{f}.toml")))
        .collect();
    LoadtestOptions {
        calls: 2,
        concurrency: 2,
        url: None,
        fake_port: None,
        audiosocket: None,
        fixtures,
        max_seconds: 300,
        call_timeout: 120,
        ramp_seconds: 0.0,
        account_sid: TEST_ACCOUNT_SID.into(),
        auth_token: TEST_AUTH_TOKEN.into(),
        api_token: "loadtest-api-token".into(),
        instances: 1,
        provider,
        server_pid: None,
        settings: Box::new(Settings::default().with_shipped_assets_at(root())),
    }
}

/// Runs the load test and checks every call went to a person by the provider's transfer,
/// each one's request carrying `marker`.
async fn transferred_by(opts: LoadtestOptions, marker: &str) -> Report {
    let provider = opts.provider;
    let report = crate::loadtest::run(opts)
        .await
        .expect("the load test runs");
    let summary = format!("{report}");
    assert_eq!(report.provider, provider);
    assert_eq!(report.lost(), 0, "{summary}");
    assert_eq!(report.started, 2, "{summary}");
    assert_eq!(
        (
            report.transferred,
            report.fallback_dials,
            report.self_served
        ),
        (2, 0, 0),
        "{summary}"
    );
    assert!(report.unexpected.is_empty(), "{summary}");
    for c in &report.calls {
        assert_eq!(c.end, End::Transferred, "{c:?}");
        let t = c.transfer.as_deref().unwrap_or_default();
        assert!(
            t.contains(marker),
            "{provider:?} transfer {t:?} lacks {marker:?}"
        );
        assert_eq!(c.queue.as_deref(), Some("general"), "{c:?}");
        assert!(!c.overload, "{c:?}");
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_plivo_calls_are_transferred_by_plivo_call_transfer() {
    let report = transferred_by(options(Provider::Plivo), "\"aleg_url\"").await;
    for c in &report.calls {
        // The id is Plivo's CallUUID shape.
        assert_eq!(c.call_sid.len(), 36, "{}", c.call_sid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_telnyx_calls_are_transferred_by_call_control() {
    let report = transferred_by(options(Provider::Telnyx), "\"to\":\"+1").await;
    for c in &report.calls {
        let t = c.transfer.as_deref().unwrap_or_default();
        assert!(
            !t.contains(crate::loadtest::fakes::telnyx::FALLBACK_COMMAND),
            "{t}"
        );
        assert!(c.call_sid.starts_with("v3:"), "{}", c.call_sid);
    }
}

/// Two instances, so each needs (and gets) its own AudioSocket listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_asterisk_calls_are_handed_back_and_routed_to_a_queue() {
    let mut opts = options(Provider::Asterisk);
    opts.instances = 2;
    let report = transferred_by(opts, "hand-back, route general").await;
    assert_eq!(report.per_instance.len(), 2);
    assert!(report.per_instance.iter().all(|p| p.completed == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_twilio_and_signalwire_still_transfer_by_rest_update() {
    transferred_by(options(Provider::Twilio), "<Dial").await;
    transferred_by(options(Provider::Signalwire), "/signalwire/transfer/").await;
}

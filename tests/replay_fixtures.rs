//! Every fixture call, through the real engine and the real Whisper model, must reach the
//! decision, queue, reason, priority, facts and timing its file expects.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use warmline::replay::{self, Ending, Replayed};

type Results = Vec<Result<Replayed, (PathBuf, String)>>;

/// Both tests read one replay of all fixtures: the model is the expensive part.
fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let stt = common::stt_sequential();
        replay::replay_all(&common::fixture_paths(), common::playbook(), stt.as_ref())
    })
}

#[test]
fn every_fixture_call_meets_its_expectation() {
    let paths = common::fixture_paths();
    assert!(
        paths.len() >= 16,
        "expected at least 16 fixture calls, found {}",
        paths.len()
    );
    let results = results();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(r) if r.passed() => {}
            Ok(r) => failures.push(replay::report(r)),
            Err((path, e)) => failures.push(format!("{}: {e}\n", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture calls failed:\n{}",
        failures.len(),
        results.len(),
        failures.concat()
    );
}

#[test]
fn fixtures_cover_every_queue_and_escape_route() {
    let mut queues = std::collections::BTreeSet::new();
    let mut reasons = std::collections::BTreeSet::new();
    let mut self_served = 0;
    for r in results().iter().flatten() {
        match r.outcome.as_ref().map(|o| &o.ending) {
            Ok(Ending::Transferred(h)) => {
                queues.insert(h.card.queue.clone());
                reasons.insert(h.card.reason.clone());
            }
            Ok(Ending::HungUp) => self_served += 1,
            _ => {}
        }
    }
    for q in ["billing", "orders", "technical", "general"] {
        assert!(
            queues.contains(q),
            "no fixture call reached queue {q}: {queues:?}"
        );
    }
    for reason in [
        "explicit_request",
        "repeated_request",
        "dtmf",
        "negative_sentiment",
        "not_understood",
        "unsupported_language",
        "dialplan",
    ] {
        assert!(
            reasons.contains(reason),
            "no fixture call escalated for {reason}: {reasons:?}"
        );
    }
    assert!(
        self_served >= 3,
        "only {self_served} self-served calls ended with a goodbye"
    );
}

#[test]
fn labeled_evaluation_meets_quality_thresholds() {
    let replayed: Vec<&Replayed> = results().iter().flatten().collect();
    assert_eq!(
        replayed.len(),
        results().len(),
        "some fixtures could not be read"
    );
    assert!(
        replayed.len() >= 40,
        "the evaluation needs at least 40 labeled calls"
    );
    let ev = replay::evaluate(&replayed);
    println!("{ev}");
    assert!(
        ev.precision() >= 0.95,
        "escalation precision {:.3} < 0.95\n{ev}",
        ev.precision()
    );
    assert!(
        ev.recall() >= 0.95,
        "escalation recall {:.3} < 0.95\n{ev}",
        ev.recall()
    );
    assert!(
        ev.queue_accuracy() >= 0.9,
        "queue accuracy {:.3} < 0.9\n{ev}",
        ev.queue_accuracy()
    );
    assert!(
        ev.fact_recall() >= 0.9,
        "fact recall {:.3} < 0.9\n{ev}",
        ev.fact_recall()
    );
    assert!(
        ev.reason_accuracy() >= 0.95,
        "reason accuracy {:.3} < 0.95\n{ev}",
        ev.reason_accuracy()
    );
    for (category, label) in replay::eval::PROMISE_ROWS {
        let (ok, n, _) = ev.categories.get(*category).copied().unwrap_or_default();
        assert!(n >= 3, "only {n} fixture calls for {label}");
        assert_eq!(ok, n, "{label}: {ok}/{n} met every expectation\n{ev}");
    }
    assert!(
        ev.priority_accuracy() >= 0.9,
        "priority accuracy {:.3} < 0.9\n{ev}",
        ev.priority_accuracy()
    );
}

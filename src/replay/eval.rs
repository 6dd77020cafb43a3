//! The labeled evaluation: how well warmline decides over a set of fixture calls.
//!
//! Escalation precision/recall (a transfer is a positive), queue accuracy, reason and priority
//! accuracy, fact recall, and a confusion table of expected against actual destination.

use std::collections::BTreeMap;
use std::fmt;

use super::check::norm_text;
use super::{Outcome, Replayed};

/// Where a call ended up: a queue, or handled without a person.
const SELF_SERVE: &str = "(self-serve)";

#[derive(Debug, Default, Clone)]
pub struct Evaluation {
    pub calls: usize,
    pub passed: usize,
    pub true_pos: usize,
    pub false_pos: usize,
    pub false_neg: usize,
    pub true_neg: usize,
    pub queue_ok: usize,
    pub queue_n: usize,
    pub reason_ok: usize,
    pub priority_ok: usize,
    pub facts_found: usize,
    pub facts_expected: usize,
    /// (expected destination, actual destination) → count.
    pub confusion: BTreeMap<(String, String), usize>,
    /// Per fixture category: (calls that met every expectation, calls, calls transferred).
    pub categories: BTreeMap<String, (usize, usize, usize)>,
    /// (expected reasons, actual reason) of transferred calls whose reason was wrong.
    pub wrong_reasons: Vec<(String, String, String)>,
    /// Digit recall over a clip set (`warmline eval --digits fixtures/digits`), when run.
    pub digits: Option<DigitRow>,
}

/// The digit-recall row: numbers exactly right on the card, and when heard as one turn.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DigitRow {
    pub on_card: usize,
    pub one_turn: usize,
    pub clips: usize,
}

impl DigitRow {
    pub fn of(set: &super::digit_recall::DigitRecall) -> Self {
        DigitRow {
            on_card: set.results.iter().filter(|r| r.recalled()).count(),
            one_turn: set.results.iter().filter(|r| r.whole_recalled()).count(),
            clips: set.results.len(),
        }
    }
}

/// Categories of the never-trap promises, shown as their own rows.
pub const PROMISE_ROWS: &[(&str, &str)] = &[
    ("no_progress", "no-progress calls"),
    ("single_word", "single-word escapes"),
    ("short_non_request", "short non-request words"),
];

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl Evaluation {
    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }
    pub fn queue_accuracy(&self) -> f64 {
        ratio(self.queue_ok, self.queue_n)
    }
    pub fn reason_accuracy(&self) -> f64 {
        ratio(self.reason_ok, self.queue_n)
    }
    pub fn priority_accuracy(&self) -> f64 {
        ratio(self.priority_ok, self.queue_n)
    }
    pub fn fact_recall(&self) -> f64 {
        ratio(self.facts_found, self.facts_expected)
    }
}

/// Scores replayed calls. Calls that could not be replayed count as wrong on every measure
/// they were labeled for.
pub fn evaluate(results: &[&Replayed]) -> Evaluation {
    let mut ev = Evaluation::default();
    for r in results {
        ev.calls += 1;
        if r.passed() {
            ev.passed += 1;
        }
        let row = ev.categories.entry(r.fixture.category.clone()).or_default();
        row.0 += usize::from(r.passed());
        row.1 += 1;
        row.2 += usize::from(r.outcome.as_ref().ok().and_then(Outcome::handoff).is_some());
        let e = &r.fixture.expect;
        let outcome: Option<&Outcome> = r.outcome.as_ref().ok();
        let handoff = outcome.and_then(Outcome::handoff);
        match (e.transfer, handoff.is_some()) {
            (true, true) => ev.true_pos += 1,
            (true, false) => ev.false_neg += 1,
            (false, true) => ev.false_pos += 1,
            (false, false) => ev.true_neg += 1,
        }
        let want_queues = e.queue.as_ref().map(|q| q.to_vec()).unwrap_or_default();
        let expected_dest = if e.transfer {
            want_queues.first().cloned().unwrap_or_else(|| "?".into())
        } else {
            SELF_SERVE.to_string()
        };
        let actual_dest = handoff.map_or_else(|| SELF_SERVE.to_string(), |h| h.card.queue.clone());
        let expected_dest = if want_queues.contains(&actual_dest) {
            actual_dest.clone()
        } else {
            expected_dest
        };
        *ev.confusion
            .entry((expected_dest, actual_dest))
            .or_default() += 1;

        ev.facts_expected += e.facts.len();
        if !e.transfer {
            continue;
        }
        ev.queue_n += 1;
        let Some(h) = handoff else { continue };
        let card = &h.card;
        if want_queues.is_empty() || want_queues.contains(&card.queue) {
            ev.queue_ok += 1;
        }
        let reasons = e.reason.as_ref().map(|r| r.to_vec()).unwrap_or_default();
        if reasons.is_empty() || reasons.contains(&card.reason) {
            ev.reason_ok += 1;
        } else {
            ev.wrong_reasons
                .push((r.fixture.id.clone(), reasons.join("|"), card.reason.clone()));
        }
        let lo_ok = e.priority_at_least.is_none_or(|p| card.priority >= p);
        let hi_ok = e.priority_at_most.is_none_or(|p| card.priority <= p);
        if lo_ok && hi_ok {
            ev.priority_ok += 1;
        }
        let hay = norm_text(&format!(
            "{} | {} | {}",
            serde_json::to_string(&card.facts).unwrap_or_default(),
            card.summary,
            card.spoken_summary
        ));
        ev.facts_found += e
            .facts
            .iter()
            .filter(|f| hay.contains(&norm_text(f)))
            .count();
    }
    ev
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "calls                 {:>6}   (all checks passed: {})",
            self.calls, self.passed
        )?;
        writeln!(
            f,
            "escalation precision  {:>6.3}   (tp {}, fp {})",
            self.precision(),
            self.true_pos,
            self.false_pos
        )?;
        writeln!(
            f,
            "escalation recall     {:>6.3}   (tp {}, fn {}, tn {})",
            self.recall(),
            self.true_pos,
            self.false_neg,
            self.true_neg
        )?;
        writeln!(
            f,
            "queue accuracy        {:>6.3}   ({}/{})",
            self.queue_accuracy(),
            self.queue_ok,
            self.queue_n
        )?;
        writeln!(
            f,
            "reason accuracy       {:>6.3}   ({}/{})",
            self.reason_accuracy(),
            self.reason_ok,
            self.queue_n
        )?;
        for (id, want, got) in &self.wrong_reasons {
            writeln!(f, "  wrong reason: {id}: expected {want}, card says {got}")?;
        }
        writeln!(
            f,
            "priority accuracy     {:>6.3}   ({}/{})",
            self.priority_accuracy(),
            self.priority_ok,
            self.queue_n
        )?;
        writeln!(
            f,
            "fact recall           {:>6.3}   ({}/{})",
            self.fact_recall(),
            self.facts_found,
            self.facts_expected
        )?;
        for (category, label) in PROMISE_ROWS {
            let (ok, n, transferred) = self.categories.get(*category).copied().unwrap_or_default();
            let extra = if *category == "short_non_request" {
                format!(", {transferred} false transfers")
            } else {
                String::new()
            };
            writeln!(
                f,
                "{label:<22}{:>6.3}   ({ok}/{n} met every expectation{extra})",
                ratio(ok, n)
            )?;
        }
        if let Some(d) = &self.digits {
            writeln!(
                f,
                "digit recall          {:>6.3}   ({}/{} numbers exact on the card; {}/{} heard as one turn)",
                ratio(d.on_card, d.clips),
                d.on_card,
                d.clips,
                d.one_turn,
                d.clips
            )?;
        }
        let mut dests: Vec<&String> = self.confusion.keys().flat_map(|(a, b)| [a, b]).collect();
        dests.sort();
        dests.dedup();
        writeln!(f, "\nconfusion (rows: expected, columns: actual)")?;
        write!(f, "{:<14}", "")?;
        for d in &dests {
            write!(f, "{:>14}", d)?;
        }
        writeln!(f)?;
        for row in &dests {
            write!(f, "{:<14}", row)?;
            for col in &dests {
                let n = self
                    .confusion
                    .get(&((*row).clone(), (*col).clone()))
                    .copied()
                    .unwrap_or(0);
                write!(f, "{:>14}", n)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_row_is_shown_only_when_measured() {
        let mut ev = Evaluation::default();
        assert!(!ev.to_string().contains("digit recall"));
        ev.digits = Some(DigitRow {
            on_card: 9,
            one_turn: 12,
            clips: 18,
        });
        let shown = ev.to_string();
        assert!(
            shown.contains(
                "digit recall           0.500   (9/18 numbers exact on the card; 12/18 heard as one turn)"
            ),
            "{shown}"
        );
    }
}

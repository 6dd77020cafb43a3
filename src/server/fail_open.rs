//! What happens to a caller once their media stream has ended without a transfer the
//! provider accepted — a dropped socket, a refused or hung transfer, a crash or restart.
//! Provider-neutral: each carrier renders the answer in its own markup. The promise is the
//! same everywhere: a goodbye the caller asked for ends the call, anything else reaches a
//! person with whatever context the store holds.

use super::AppState;
use crate::call::Outcome;
use crate::store::Store;

/// The next step for a caller whose stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStream {
    /// The caller had their goodbye.
    Hangup,
    /// Dial a person; `handoff_id` names the card and whisper when one exists.
    Dial {
        say: &'static str,
        queue: String,
        target: String,
        handoff_id: Option<String>,
    },
}

/// How long the stream-ended answer waits for this instance's queued records.
const FAIL_OPEN_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

const DIAL_DIRECTLY: &str = "I couldn't connect you the usual way, so I'm dialling the team directly. I've passed on what you told me.";
const CONNECT: &str = "Let me connect you to someone who can help.";

/// The fallback queue's name and target.
pub fn fallback_queue(state: &AppState) -> Option<(String, String)> {
    let plan = &state.book.dialplan;
    let q = plan
        .queue(&plan.fallback_queue)
        .or_else(|| plan.queues.first())?;
    Some((q.name.clone(), q.target.as_str().to_string()))
}

/// Decides from the store (flushed first) what a call whose stream ended gets.
pub async fn after_stream(state: &AppState, call_sid: &str) -> AfterStream {
    let (store, records) = (state.store.clone(), state.records.clone());
    let sid = call_sid.to_string();
    let fallback = fallback_queue(state);
    let fb = fallback.clone();
    let (outcome, card) = tokio::task::spawn_blocking(move || {
        // Bounded: with the database away the caller still reaches a person well inside the
        // provider's webhook timeout.
        records.flush_within(FAIL_OPEN_FLUSH);
        let outcome = store.outcome(&sid).unwrap_or_else(|e| {
            // Unreadable (the database is away, or a newer instance wrote an outcome this
            // build cannot name) is not "over": the caller goes to a person.
            tracing::warn!(call_sid = %sid, error = %e, "call outcome unreadable: failing open");
            None
        });
        let card = store.handoff_for_call(&sid).ok().flatten().or_else(|| {
            // No card: the call was cut before any decision (a crash, kill -9, a dropped
            // socket in the old process). Whatever the store holds still goes with the caller.
            let (queue, target) = fb?;
            recover_card(&store, &sid, &queue, &target)
        });
        (outcome, card)
    })
    .await
    .unwrap_or((None, None));
    if outcome == Some(Outcome::SelfServed) {
        tracing::info!("stream ended after goodbye: hanging up");
        return AfterStream::Hangup;
    }
    if let Some(card) = card {
        let target = card["target"].as_str().unwrap_or_default().to_string();
        if !target.is_empty() {
            tracing::warn!(
                ?outcome,
                "stream ended with a handoff pending: dialling directly"
            );
            return AfterStream::Dial {
                say: DIAL_DIRECTLY,
                queue: card["queue"].as_str().unwrap_or_default().to_string(),
                target,
                handoff_id: card["handoff_id"].as_str().map(str::to_string),
            };
        }
    }
    tracing::warn!(
        ?outcome,
        "stream ended without a transfer or goodbye: failing open to a person"
    );
    state.metrics.inc_calls_failed_open();
    let (queue, target) = fallback.unwrap_or_default();
    AfterStream::Dial {
        say: CONNECT,
        queue,
        target,
        handoff_id: None,
    }
}

impl AfterStream {
    /// Renders the decision in a carrier's markup: `dial(say, target, whisper_url)`.
    pub fn render(
        self,
        whisper_url: impl Fn(&str) -> Option<String>,
        hangup: impl Fn() -> String,
        dial: impl Fn(&str, &crate::dialplan::Target, &str) -> String,
        say_only: impl Fn(&str) -> String,
    ) -> String {
        match self {
            AfterStream::Hangup => hangup(),
            AfterStream::Dial {
                say,
                target,
                handoff_id,
                ..
            } if !target.is_empty() => {
                let whisper = handoff_id
                    .and_then(|id| whisper_url(&id))
                    .unwrap_or_default();
                dial(
                    say,
                    &crate::dialplan::Target::from_dialled(&target),
                    &whisper,
                )
            }
            AfterStream::Dial { say, .. } => say_only(say),
        }
    }
}

/// What the agent hears for a handoff (by its id), once the card queued before the transfer
/// is stored.
pub async fn spoken_summary(state: &AppState, handoff_id: &str) -> Option<String> {
    let (store, records) = (state.store.clone(), state.records.clone());
    let id = handoff_id.to_string();
    tokio::task::spawn_blocking(move || {
        records.flush();
        store.handoff_summary(&id).ok().flatten()
    })
    .await
    .ok()
    .flatten()
}

/// What the agent hears when no summary can be found.
pub const NO_SUMMARY: &str = "A caller is being connected to you.";

/// Builds and stores a context card from a call's stored record when the call never got
/// one, so the agent still hears and reads what the caller already said.
pub fn recover_card(
    store: &Store,
    call_sid: &str,
    queue: &str,
    target: &str,
) -> Option<serde_json::Value> {
    let call = store.get_call(call_sid).ok().flatten()?;
    let said: Vec<&str> = call["transcript"]
        .as_array()?
        .iter()
        .filter(|l| l["speaker"] == "caller")
        .filter_map(|l| l["text"].as_str())
        .collect();
    if said.is_empty() {
        return None;
    }
    let quoted = said
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" ");
    let last: String = said.last()?.chars().take(200).collect();
    let id = random_id();
    let card = serde_json::json!({
        "handoff_id": id,
        "call_sid": call_sid,
        "from": call["from"],
        "to": call["to"],
        "queue": queue,
        "target": target,
        "reason": "system_fault",
        "priority": "high",
        "intent": null,
        "summary": format!("The automated line was cut off mid-call and could not decide; the caller had said: {quoted}"),
        "spoken_summary": format!("A caller whose automated call was cut off. They last said: {last}"),
        "transcript": call["transcript"],
        "started_at": call["started_at"],
        "handoff_at": chrono::Utc::now().to_rfc3339(),
    });
    let spoken = card["spoken_summary"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Err(e) = store.save_handoff(&id, call_sid, &card, &spoken) {
        tracing::error!(error = %e, "cannot store the recovered context card; dialling anyway");
    }
    Some(card)
}

/// 128 random bits as hex: stream tokens and handoff ids no one can guess.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

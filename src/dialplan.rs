//! The dialplan: queues, topics, self-serve answers and escalation thresholds, from TOML.
//!
//! Loading validates everything the engine relies on, so a broken dialplan is refused at
//! start-up with a line-numbered error instead of failing in the middle of a call.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::analysis::intent::IntentSpec;
use crate::prompts::PromptLibrary;

/// A dialplan that could not be used, with the place in the file that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DialplanError {
    #[error("cannot read dialplan {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

/// Where a queue's calls are dialled: a phone number or a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Number(String),
    Sip(String),
}

impl Target {
    /// A target as dialled: a `sip:` URI, or else a number. For targets that come back as
    /// text (the fallback queue read from a stored card).
    pub fn from_dialled(s: &str) -> Target {
        if s.starts_with("sip:") {
            Target::Sip(s.to_string())
        } else {
            Target::Number(s.to_string())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Target::Number(s) | Target::Sip(s) => s,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub target: Target,
}

/// A topic the caller may name; it routes to a queue.
#[derive(Debug, Clone)]
pub struct Intent {
    pub name: String,
    pub queue: String,
    pub phrases: Vec<String>,
}

/// A question warmline answers itself.
#[derive(Debug, Clone)]
pub struct Answer {
    pub name: String,
    pub prompt: String,
    pub phrases: Vec<String>,
    /// How the model mishears the question when it is said on its own ("Hours." → "Ours."):
    /// they count only as the whole utterance, never inside a sentence.
    pub alone: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    #[serde(default = "defaults::repeated_request_after")]
    pub repeated_request_after: u32,
    #[serde(default = "defaults::not_understood_limit")]
    pub not_understood_limit: u32,
    #[serde(default = "defaults::min_confidence")]
    pub min_confidence: f32,
    #[serde(default = "defaults::low_confidence_limit")]
    pub low_confidence_limit: u32,
    #[serde(default = "defaults::negative_threshold")]
    pub negative_threshold: f32,
    #[serde(default = "defaults::worsening_delta")]
    pub worsening_delta: f32,
    #[serde(default = "defaults::silence_reprompt_ms")]
    pub silence_reprompt_ms: u64,
    /// Turns that did not move the caller forward (a repeat-please, a clarifying question, a
    /// silence reprompt, an answer the caller rejected) tolerated per call; the next one goes
    /// to a person.
    #[serde(default = "defaults::no_progress_limit")]
    pub no_progress_limit: u32,
    /// Longest time in automation without progress before a person takes over.
    #[serde(default = "defaults::no_progress_ms")]
    pub no_progress_ms: u64,
    /// Mean token probability a self-serve answer needs: an answer given to a garbled
    /// transcript is a wrong answer read out with confidence.
    #[serde(default = "defaults::answer_min_confidence")]
    pub answer_min_confidence: f32,
}

/// How the line decides the caller has finished a turn (see [`crate::call::turn_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnTaking {
    /// Judge the end of a turn from the words as well as the pause: act at the first pause on
    /// a request for a person, wait for the rest of a half-finished one. Off = silence alone.
    pub semantic: bool,
    /// Longest silence a half-finished turn is waited for before the line answers what it has.
    pub hold_ms: u64,
    /// A number read out with fewer digits than this is still being read.
    pub id_digits_min: usize,
}

impl Default for TurnTaking {
    fn default() -> Self {
        TurnTaking {
            semantic: true,
            hold_ms: 1_500,
            id_digits_min: 5,
        }
    }
}

mod defaults {
    pub fn repeated_request_after() -> u32 {
        2
    }
    pub fn not_understood_limit() -> u32 {
        2
    }
    pub fn min_confidence() -> f32 {
        0.4
    }
    pub fn low_confidence_limit() -> u32 {
        2
    }
    pub fn negative_threshold() -> f32 {
        -0.5
    }
    pub fn worsening_delta() -> f32 {
        0.35
    }
    pub fn silence_reprompt_ms() -> u64 {
        10_000
    }
    pub fn no_progress_limit() -> u32 {
        2
    }
    pub fn no_progress_ms() -> u64 {
        45_000
    }
    pub fn answer_min_confidence() -> f32 {
        0.55
    }
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            repeated_request_after: defaults::repeated_request_after(),
            not_understood_limit: defaults::not_understood_limit(),
            min_confidence: defaults::min_confidence(),
            low_confidence_limit: defaults::low_confidence_limit(),
            negative_threshold: defaults::negative_threshold(),
            worsening_delta: defaults::worsening_delta(),
            silence_reprompt_ms: defaults::silence_reprompt_ms(),
            no_progress_limit: defaults::no_progress_limit(),
            no_progress_ms: defaults::no_progress_ms(),
            answer_min_confidence: defaults::answer_min_confidence(),
        }
    }
}

/// A validated dialplan.
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub name: String,
    pub greeting: String,
    pub vocabulary: Vec<String>,
    pub escalation: Escalation,
    pub turns: TurnTaking,
    pub queues: Vec<Queue>,
    pub intents: Vec<Intent>,
    pub answers: Vec<Answer>,
    pub goodbye_prompt: String,
    pub goodbye_phrases: Vec<String>,
    /// The queue for callers whose topic is unknown.
    pub fallback_queue: String,
}

// ---- raw file shape (spans kept for line-numbered errors) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialplan {
    name: String,
    greeting: Spanned<String>,
    #[serde(default)]
    vocabulary: Vec<String>,
    #[serde(default)]
    escalation: Option<Escalation>,
    #[serde(default)]
    turns: TurnTaking,
    queues: Spanned<Vec<RawQueue>>,
    #[serde(default)]
    intents: Vec<RawIntent>,
    #[serde(default)]
    answers: Vec<RawAnswer>,
    goodbye: RawGoodbye,
    #[serde(default)]
    fallback_queue: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: Spanned<String>,
    target: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    name: Spanned<String>,
    queue: Spanned<String>,
    phrases: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer {
    name: Spanned<String>,
    prompt: Spanned<String>,
    phrases: Spanned<Vec<String>>,
    #[serde(default)]
    alone: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoodbye {
    prompt: Spanned<String>,
    phrases: Spanned<Vec<String>>,
}

fn line_of(src: &str, span: Range<usize>) -> usize {
    src[..span.start.min(src.len())].matches('\n').count() + 1
}

impl Dialplan {
    /// Reads and validates a dialplan file; prompt ids are checked against `prompts`.
    pub fn load(path: &Path, prompts: &PromptLibrary) -> Result<Dialplan, DialplanError> {
        let src = std::fs::read_to_string(path).map_err(|source| DialplanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Dialplan::parse(&src, &path.display().to_string(), prompts)
    }

    /// Parses and validates dialplan text; `origin` names it in errors.
    pub fn parse(
        src: &str,
        origin: &str,
        prompts: &PromptLibrary,
    ) -> Result<Dialplan, DialplanError> {
        let invalid = |span: Range<usize>, message: String| DialplanError::Invalid {
            path: origin.to_string(),
            line: line_of(src, span),
            message,
        };
        let raw: RawDialplan = toml::from_str(src).map_err(|e| {
            invalid(
                e.span().unwrap_or(0..0),
                e.message().trim().replace('\n', " "),
            )
        })?;

        let check_prompt = |id: &Spanned<String>| {
            if prompts.get(id.get_ref()).is_some() {
                Ok(())
            } else {
                Err(invalid(
                    id.span(),
                    format!(
                        "unknown prompt `{}` (not in the prompt library)",
                        id.get_ref()
                    ),
                ))
            }
        };
        let check_phrases = |what: &str, phrases: &Spanned<Vec<String>>| {
            if phrases.get_ref().iter().all(|p| !p.trim().is_empty())
                && !phrases.get_ref().is_empty()
            {
                Ok(())
            } else {
                Err(invalid(
                    phrases.span(),
                    format!("{what} needs at least one phrase and no empty phrases"),
                ))
            }
        };

        check_prompt(&raw.greeting)?;
        if raw.queues.get_ref().is_empty() {
            return Err(invalid(
                raw.queues.span(),
                "at least one queue is required".into(),
            ));
        }
        let mut queues = Vec::new();
        let mut names = HashSet::new();
        for q in raw.queues.into_inner() {
            if !names.insert(q.name.get_ref().clone()) {
                return Err(invalid(
                    q.name.span(),
                    format!("duplicate queue `{}`", q.name.get_ref()),
                ));
            }
            let t = q.target.get_ref().trim();
            let target = if t.starts_with("sip:") {
                Target::Sip(t.to_string())
            } else if t.starts_with('+')
                && t.len() > 4
                && t[1..].chars().all(|c| c.is_ascii_digit())
            {
                Target::Number(t.to_string())
            } else {
                return Err(invalid(
                    q.target.span(),
                    format!("queue target `{t}` must be an E.164 number (+1555…) or a sip: URI"),
                ));
            };
            queues.push(Queue {
                name: q.name.into_inner(),
                target,
            });
        }

        let fallback_queue = match raw.fallback_queue {
            Some(f) if !names.contains(f.get_ref()) => {
                return Err(invalid(
                    f.span(),
                    format!("unknown fallback queue `{}`", f.get_ref()),
                ));
            }
            Some(f) => f.into_inner(),
            None if names.contains("general") => "general".to_string(),
            None => queues[0].name.clone(),
        };

        let mut intents = Vec::new();
        for i in raw.intents {
            if !names.contains(i.queue.get_ref()) {
                return Err(invalid(
                    i.queue.span(),
                    format!(
                        "intent `{}` routes to unknown queue `{}`",
                        i.name.get_ref(),
                        i.queue.get_ref()
                    ),
                ));
            }
            check_phrases(&format!("intent `{}`", i.name.get_ref()), &i.phrases)?;
            intents.push(Intent {
                name: i.name.into_inner(),
                queue: i.queue.into_inner(),
                phrases: i.phrases.into_inner(),
            });
        }
        let mut answers = Vec::new();
        for a in raw.answers {
            check_prompt(&a.prompt)?;
            check_phrases(&format!("answer `{}`", a.name.get_ref()), &a.phrases)?;
            answers.push(Answer {
                name: a.name.into_inner(),
                prompt: a.prompt.into_inner(),
                phrases: a.phrases.into_inner(),
                alone: a.alone,
            });
        }
        check_prompt(&raw.goodbye.prompt)?;
        check_phrases("goodbye", &raw.goodbye.phrases)?;

        let escalation = raw.escalation.unwrap_or_default();
        Ok(Dialplan {
            name: raw.name,
            greeting: raw.greeting.into_inner(),
            vocabulary: raw.vocabulary,
            escalation,
            turns: raw.turns,
            queues,
            intents,
            answers,
            goodbye_prompt: raw.goodbye.prompt.into_inner(),
            goodbye_phrases: raw.goodbye.phrases.into_inner(),
            fallback_queue,
        })
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    pub fn intent_specs(&self) -> Vec<IntentSpec> {
        self.intents
            .iter()
            .map(|i| IntentSpec {
                name: i.name.clone(),
                phrases: i.phrases.clone(),
            })
            .collect()
    }

    pub fn answer_specs(&self) -> Vec<IntentSpec> {
        self.answers
            .iter()
            .map(|a| IntentSpec {
                name: a.name.clone(),
                phrases: a.phrases.clone(),
            })
            .collect()
    }

    /// Whisper's initial prompt: the words callers of this line are likely to say.
    pub fn stt_prompt(&self) -> String {
        self.vocabulary.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib() -> PromptLibrary {
        PromptLibrary::from_texts(&[
            ("greeting", "Hello"),
            ("goodbye", "Bye"),
            ("answer_hours", "We're open"),
        ])
    }

    const GOOD: &str = r#"
name = "t"
greeting = "greeting"
[[queues]]
name = "general"
target = "+15550100000"
[[queues]]
name = "tech"
target = "sip:tech@example.com"
[[intents]]
name = "technical"
queue = "tech"
phrases = ["internet"]
[[answers]]
name = "hours"
prompt = "answer_hours"
phrases = ["open"]
[goodbye]
prompt = "goodbye"
phrases = ["bye"]
"#;

    #[test]
    fn good_dialplan_loads_with_defaults() {
        let d = Dialplan::parse(GOOD, "t.toml", &lib()).unwrap();
        assert_eq!(d.fallback_queue, "general");
        assert_eq!(
            d.queue("tech").unwrap().target,
            Target::Sip("sip:tech@example.com".into())
        );
        assert_eq!(d.escalation.repeated_request_after, 2);
        assert_eq!(d.intents[0].queue, "tech");
    }

    fn err_line(src: &str) -> (usize, String) {
        match Dialplan::parse(src, "t.toml", &lib()) {
            Err(DialplanError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an invalid dialplan, got {other:?}"),
        }
    }

    #[test]
    fn unknown_queue_is_reported_on_its_line() {
        let bad = GOOD.replace("queue = \"tech\"", "queue = \"nope\"");
        let (line, msg) = err_line(&bad);
        assert_eq!(line, 12, "{msg}");
        assert!(msg.contains("unknown queue `nope`"), "{msg}");
    }

    #[test]
    fn unknown_prompt_is_reported_on_its_line() {
        let bad = GOOD.replace("prompt = \"answer_hours\"", "prompt = \"answer_days\"");
        let (line, msg) = err_line(&bad);
        assert_eq!(line, 16, "{msg}");
        assert!(msg.contains("answer_days"), "{msg}");
    }

    #[test]
    fn bad_target_is_reported_on_its_line() {
        let bad = GOOD.replace("+15550100000", "555-0100");
        let (line, msg) = err_line(&bad);
        assert_eq!(line, 6, "{msg}");
        assert!(msg.contains("E.164"), "{msg}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let bad = GOOD.replace("phrases = [\"bye\"]", "phrases = [\"bye\"");
        let (line, _) = err_line(&bad);
        assert!(line >= 20, "line {line}");
    }

    #[test]
    fn unknown_field_is_refused() {
        let bad = GOOD.replace("name = \"t\"", "name = \"t\"\ngreting = \"x\"");
        let (line, msg) = err_line(&bad);
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("greting"), "{msg}");
    }

    #[test]
    fn empty_phrase_list_is_refused() {
        let bad = GOOD.replace("phrases = [\"internet\"]", "phrases = []");
        let (line, msg) = err_line(&bad);
        assert_eq!(line, 13, "{msg}");
        assert!(msg.contains("at least one phrase"), "{msg}");
    }

    #[test]
    fn shipped_dialplan_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prompts = PromptLibrary::load(&root.join("voice-prompts")).unwrap();
        let d = Dialplan::load(&root.join("dialplans/support.toml"), &prompts).unwrap();
        for q in ["billing", "orders", "technical", "general"] {
            assert!(d.queue(q).is_some(), "queue {q}");
        }
    }
}

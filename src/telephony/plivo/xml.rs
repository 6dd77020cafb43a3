//! Plivo XML documents warmline answers with. Every interpolated string is escaped.

use crate::dialplan::Target;
use crate::telephony::twilio::twiml::escape;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Answer: stream the caller both ways as 8 kHz μ-law; when the stream ends, Plivo runs the
/// next element, which asks warmline what to do (the fail-open path).
pub fn answer_stream(stream_url: &str, token: &str, after_url: &str) -> String {
    format!(
        r#"{PROLOG}<Response><Stream bidirectional="true" keepCallAlive="true" audioTrack="inbound" contentType="audio/x-mulaw;rate=8000" extraHeaders="token={}">{}</Stream><Redirect method="POST">{}</Redirect></Response>"#,
        escape(token),
        escape(stream_url),
        escape(after_url)
    )
}

/// Tell the caller where they are going and dial; the agent hears `confirm_sound_url`'s
/// document on answer, and takes the call with 1.
pub fn transfer(say: &str, target: &Target, confirm_sound_url: &str) -> String {
    let endpoint = match target {
        Target::Sip(uri) => format!("<User>{}</User>", escape(uri)),
        Target::Number(n) => format!("<Number>{}</Number>", escape(n)),
    };
    let confirm = if confirm_sound_url.is_empty() {
        String::new()
    } else {
        format!(
            r#" confirmSound="{}" confirmKey="1""#,
            escape(confirm_sound_url)
        )
    };
    format!(
        "{PROLOG}<Response><Speak>{}</Speak><Dial{confirm}>{endpoint}</Dial></Response>",
        escape(say)
    )
}

pub fn speak(text: &str) -> String {
    format!(
        "{PROLOG}<Response><Speak>{}</Speak></Response>",
        escape(text)
    )
}

/// Plays `audio_url` (a WAV of the spoken summary), then speaks `then`. `<Play>` is allowed
/// in a confirmSound document (plivo.com docs `xml/dial`: "Play, Speak or Wait" only; see
/// ../shared/notes/telephony-providers.md §3).
pub fn play_then_speak(audio_url: &str, then: &str) -> String {
    format!(
        "{PROLOG}<Response><Play>{}</Play><Speak>{}</Speak></Response>",
        escape(audio_url),
        escape(then)
    )
}

pub fn hangup() -> String {
    format!("{PROLOG}<Response><Hangup/></Response>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_escape_what_they_carry() {
        let a = answer_stream("wss://x/plivo/media", "t0k", "https://x/plivo/stream-ended");
        assert!(a.contains(r#"bidirectional="true""#) && a.contains("extraHeaders=\"token=t0k\""));
        assert!(a.contains("<Redirect method=\"POST\">https://x/plivo/stream-ended</Redirect>"));
        let t = transfer(
            "Bills & more <now>",
            &Target::Number("+1555".into()),
            "https://x/w?a=1&b=2",
        );
        assert!(
            t.contains("<Speak>Bills &amp; more &lt;now&gt;</Speak>"),
            "{t}"
        );
        assert!(
            t.contains(r#"confirmSound="https://x/w?a=1&amp;b=2" confirmKey="1""#),
            "{t}"
        );
        assert!(t.contains("<Number>+1555</Number>"));
        assert!(
            transfer("x", &Target::Sip("sip:a@b".into()), "")
                .contains("<Dial><User>sip:a@b</User></Dial>")
        );
        assert_eq!(
            play_then_speak("https://x/audio/summary/a.wav?x=1&y=2", "Press 1 <now>"),
            format!(
                "{PROLOG}<Response><Play>https://x/audio/summary/a.wav?x=1&amp;y=2</Play><Speak>Press 1 &lt;now&gt;</Speak></Response>"
            )
        );
    }
}

//! TwiML documents warmline answers with or pushes into a live call.
//!
//! Every interpolated string is escaped: caller-controlled text (numbers, summaries built
//! from transcripts) ends up in these documents, and one stray `&` makes Twilio reject the
//! whole document and drop the call.

use crate::dialplan::Target;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Escapes text for both element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

fn document(body: &str) -> String {
    format!("{PROLOG}<Response>{body}</Response>")
}

/// Answer to the voice webhook: stream the call to `stream_url`; Twilio posts to
/// `action_url` when the stream ends without a REST transfer (the fail-open path).
pub fn connect_stream(action_url: &str, stream_url: &str, params: &[(&str, &str)]) -> String {
    let parameters: String = params
        .iter()
        .map(|(name, value)| {
            format!(
                r#"<Parameter name="{}" value="{}"/>"#,
                escape(name),
                escape(value)
            )
        })
        .collect();
    document(&format!(
        r#"<Connect action="{}"><Stream url="{}">{parameters}</Stream></Connect>"#,
        escape(action_url),
        escape(stream_url)
    ))
}

/// Tells the caller what happens, then dials the agent; `whisper_url` is fetched on the
/// agent's leg once they answer, so they hear the summary before the caller is bridged.
pub fn transfer(say: &str, target: &Target, whisper_url: &str) -> String {
    let noun = match target {
        Target::Sip(_) => "Sip",
        Target::Number(_) => "Number",
    };
    document(&format!(
        r#"<Say>{}</Say><Dial><{noun} url="{}">{}</{noun}></Dial>"#,
        escape(say),
        escape(whisper_url),
        escape(target.as_str())
    ))
}

pub fn say(text: &str) -> String {
    document(&format!("<Say>{}</Say>", escape(text)))
}

pub fn hangup() -> String {
    document("<Hangup/>")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoes [`escape`]; `&amp;` last so an escaped entity is not decoded twice.
    fn unescape(text: &str) -> String {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    /// The value of `attr="…"` in the first `<tag …>` of `xml`, unescaped.
    fn attr(xml: &str, tag: &str, attr: &str) -> String {
        let start = xml.find(&format!("<{tag} ")).expect("tag present");
        let rest = &xml[start..];
        let key = format!(r#" {attr}=""#);
        let at = rest.find(&key).expect("attribute present") + key.len();
        let end = rest[at..].find('"').expect("closing quote");
        unescape(&rest[at..at + end])
    }

    /// The text between `<tag…>` and `</tag>`, unescaped.
    fn text(xml: &str, tag: &str) -> String {
        let open = xml.find(&format!("<{tag}")).expect("tag present");
        let body = open + xml[open..].find('>').expect("tag end") + 1;
        let close = xml.find(&format!("</{tag}>")).expect("closing tag");
        unescape(&xml[body..close])
    }

    fn assert_well_formed_response(xml: &str) {
        assert!(xml.starts_with(PROLOG), "{xml}");
        assert!(xml[PROLOG.len()..].starts_with("<Response>"), "{xml}");
        assert!(xml.ends_with("</Response>"), "{xml}");
        let body = &xml[PROLOG.len()..];
        let quotes = body.matches('"').count();
        assert_eq!(quotes % 2, 0, "unbalanced quotes in {xml}");
        assert_eq!(
            body.matches('<').count(),
            body.matches('>').count(),
            "{xml}"
        );
    }

    #[test]
    fn connect_stream_with_parameters() {
        let xml = connect_stream(
            "https://ex.com/twilio/stream-ended?a=1&b=2",
            "wss://ex.com/twilio/media",
            &[("From", "+15550001111"), ("token", "a\"b'c<d>&e")],
        );
        assert_well_formed_response(&xml);
        assert!(xml.contains("&amp;b=2"), "{xml}");
        assert_eq!(
            attr(&xml, "Connect", "action"),
            "https://ex.com/twilio/stream-ended?a=1&b=2"
        );
        assert_eq!(attr(&xml, "Stream", "url"), "wss://ex.com/twilio/media");
        assert!(xml.contains(r#"<Parameter name="From" value="+15550001111"/>"#));
        assert!(
            xml.contains(r#"<Parameter name="token" value="a&quot;b&apos;c&lt;d&gt;&amp;e"/>"#)
        );
        assert!(xml.contains("</Stream></Connect></Response>"));
    }

    #[test]
    fn transfer_to_number() {
        let xml = transfer(
            "Connecting you to billing & payments.",
            &Target::Number("+15550100001".into()),
            "https://ex.com/twilio/agent-whisper/h1",
        );
        assert_well_formed_response(&xml);
        assert_eq!(text(&xml, "Say"), "Connecting you to billing & payments.");
        assert!(xml.contains("billing &amp; payments"));
        assert_eq!(
            attr(&xml, "Number", "url"),
            "https://ex.com/twilio/agent-whisper/h1"
        );
        assert_eq!(text(&xml, "Number"), "+15550100001");
        assert!(xml.contains("<Dial><Number "));
        assert!(!xml.contains("<Sip"));
    }

    #[test]
    fn transfer_to_sip() {
        let xml = transfer(
            "One moment.",
            &Target::Sip("sip:agent@pbx.example.com".into()),
            "https://ex.com/w/1",
        );
        assert_well_formed_response(&xml);
        assert_eq!(text(&xml, "Sip"), "sip:agent@pbx.example.com");
        assert_eq!(attr(&xml, "Sip", "url"), "https://ex.com/w/1");
        assert!(!xml.contains("<Number"));
    }

    #[test]
    fn say_escapes_text() {
        let xml = say(r#"Caller said "I'm <angry> & done""#);
        assert_well_formed_response(&xml);
        assert_eq!(text(&xml, "Say"), r#"Caller said "I'm <angry> & done""#);
        assert!(xml.contains("&quot;I&apos;m &lt;angry&gt; &amp; done&quot;"));
    }

    #[test]
    fn hangup_document() {
        let xml = hangup();
        assert_well_formed_response(&xml);
        assert!(xml.ends_with("<Response><Hangup/></Response>"));
    }
}

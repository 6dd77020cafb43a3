//! `X-Twilio-Signature`: proof that a webhook request came from the Twilio account that owns
//! the auth token.
//!
//! signature = base64(HMAC-SHA1(auth_token, url + k1 + v1 + k2 + v2 …)) with POST parameters
//! sorted by key. The URL must be exactly the one Twilio was configured with (scheme, host,
//! port, path and query), so callers pass the public URL, not the one axum saw.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    // Sorting by value too makes repeated keys deterministic, as Twilio's own libraries do.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio would send for this request.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `header` is the valid signature, compared in constant time so response timing
/// leaks nothing about the expected value.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    let Ok(claimed) = BASE64.decode(header.trim()) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const TOKEN: &str = "12345";
    const EXPECTED: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn known_vector() {
        assert_eq!(compute(TOKEN, URL, &params()), EXPECTED);
        assert!(validate(TOKEN, URL, &params(), EXPECTED));
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut reversed = params();
        reversed.reverse();
        assert_eq!(compute(TOKEN, URL, &reversed), EXPECTED);
    }

    #[test]
    fn tampered_param_fails() {
        let mut tampered = params();
        tampered[2].1 = "1235".into();
        assert!(!validate(TOKEN, URL, &tampered, EXPECTED));
    }

    #[test]
    fn wrong_url_token_or_header_fails() {
        assert!(!validate(
            TOKEN,
            "https://mycompany.com/myapp.php",
            &params(),
            EXPECTED
        ));
        assert!(!validate("54321", URL, &params(), EXPECTED));
        assert!(!validate(TOKEN, URL, &params(), ""));
        assert!(!validate(TOKEN, URL, &params(), "not base64!"));
        assert!(!validate(
            TOKEN,
            URL,
            &params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ"
        ));
    }

    #[test]
    fn no_params_signs_url_only() {
        let sig = compute(TOKEN, "wss://ex.com/twilio/media", &[]);
        assert!(validate(TOKEN, "wss://ex.com/twilio/media", &[], &sig));
        assert!(!validate(TOKEN, "https://ex.com/twilio/media", &[], &sig));
    }
}

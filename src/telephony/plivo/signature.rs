//! `X-Plivo-Signature-V3`: base64(HMAC-SHA256(auth_token, base + "." + nonce)), where for a
//! POST the base is the URL without its query, then `?` + the sorted query (`k=v&…`) when
//! there is one or any POST parameters, then `.` when there were both, then the sorted POST
//! parameters as `k` + `v` concatenated. The header may hold several comma-separated
//! signatures (rotated tokens); any match passes. Source: plivo-python
//! `plivo/utils/signature_v3.py` (construct_post_url, get_signature_v3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn base_string(url: &str, params: &[(String, String)]) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut base = path.to_string();
    if !query.is_empty() || !params.is_empty() {
        base.push('?');
        base.push_str(&query);
    }
    if !query.is_empty() && !params.is_empty() {
        base.push('.');
    }
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        base.push_str(k);
        base.push_str(v);
    }
    base
}

/// The signature Plivo would send for a POST to `url` with `params` and `nonce`.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)], nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(base_string(url, params).as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether any signature in `header` is valid, each compared in constant time.
pub fn validate(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
    header: &str,
) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(base_string(url, params).as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    header.split(',').any(|candidate| {
        BASE64
            .decode(candidate.trim())
            .is_ok_and(|claimed| mac.clone().verify_slice(&claimed).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_base_string_follows_plivos_construction() {
        let params = p(&[("To", "+1666"), ("CallUUID", "abc"), ("From", "+1555")]);
        assert_eq!(
            base_string("https://x.example/answer", &params),
            "https://x.example/answer?CallUUIDabcFrom+1555To+1666"
        );
        assert_eq!(
            base_string("https://x.example/answer?b=2&a=1", &params),
            "https://x.example/answer?a=1&b=2.CallUUIDabcFrom+1555To+1666"
        );
        assert_eq!(
            base_string("https://x.example/answer?b=2&a=1", &[]),
            "https://x.example/answer?a=1&b=2"
        );
        assert_eq!(
            base_string("https://x.example/a", &[]),
            "https://x.example/a"
        );
    }

    #[test]
    fn signatures_verify_in_any_position_and_nothing_else_does() {
        let params = p(&[("CallUUID", "abc")]);
        let good = compute("token", "https://x.example/a", &params, "12345");
        assert!(validate(
            "token",
            "https://x.example/a",
            &params,
            "12345",
            &good
        ));
        let rotated = format!("bm90LWl0,{good}");
        assert!(validate(
            "token",
            "https://x.example/a",
            &params,
            "12345",
            &rotated
        ));
        assert!(!validate(
            "token",
            "https://x.example/a",
            &params,
            "54321",
            &good
        ));
        assert!(!validate(
            "other",
            "https://x.example/a",
            &params,
            "12345",
            &good
        ));
        assert!(!validate(
            "token",
            "https://x.example/b",
            &params,
            "12345",
            &good
        ));
        assert!(!validate(
            "token",
            "https://x.example/a",
            &[],
            "12345",
            &good
        ));
        assert!(!validate(
            "token",
            "https://x.example/a",
            &params,
            "12345",
            ""
        ));
    }
}

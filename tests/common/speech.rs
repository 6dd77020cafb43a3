//! Fetching the spoken summary's audio as a carrier does, and checking it is a WAV a phone
//! can play that is as long as its sentence.

use std::io::Cursor;

/// GETs `url` and checks: 200, `audio/wav`, `Cache-Control: no-store`, 8 kHz mono 16-bit PCM,
/// audible, and a length that fits `spoken` (the card's spoken summary): 120–800 ms per
/// word plus the edges, never over 20 s. Returns the duration in ms.
pub async fn assert_summary_wav(http: &reqwest::Client, url: &str, spoken: &str) -> u64 {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "audio/wav");
    assert_eq!(header("cache-control"), "no-store");
    let body = r.bytes().await.unwrap();
    assert_eq!(&body[0..4], b"RIFF");
    assert_eq!(&body[8..12], b"WAVE");
    let mut wav = hound::WavReader::new(Cursor::new(body.to_vec())).expect("a valid WAV");
    let spec = wav.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let pcm: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(peak > 5000, "no voice in the summary audio (peak {peak})");
    let ms = pcm.len() as u64 / 8;
    let words = spoken.split_whitespace().count() as u64;
    assert!(
        ms >= 120 * words && ms <= 800 * words + 400 && ms <= 20_000,
        "{ms} ms of audio for {words} words: {spoken}"
    );
    ms
}

/// An unknown handoff id is 404, and not cacheable either.
pub async fn assert_unknown_summary_is_404(http: &reqwest::Client, base: &str) {
    for id in [
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef.wav",
    ] {
        let r = http
            .get(format!("{base}/audio/summary/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{id}");
        assert_eq!(
            r.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
}

#!/usr/bin/env python3
"""Render the hard-words set: single escape words and short non-request words, each said alone
by many voices over a telephone line -> fixtures/hard_words/<voice>/<word>.ulaw + manifest.json

    scripts/setup_tts.sh && python3 scripts/make_hard_words.py

The test `tests/hard_words.rs` plays every clip as a one-turn call through the real model and
engine: each escape word must transfer on that turn as `explicit_request` (>= 95 %), and no
non-request word may transfer at all. Voices span Piper (natural), flite and espeak-ng
(synthetic), slow, fast, quiet and noisy lines. The line is exactly make_fixtures.py's
(sox -R, 8 kHz, sinc 300-3400, norm, gain, pad, band-limited noise, G.711 mu-law), stored as
raw mu-law to keep the clips small. Deterministic: Piper is seeded per text, sox runs with -R.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (re-execs inside .venv-tts when it exists)

OUT = mf.ROOT / "fixtures" / "hard_words"

ESCAPES = ["Agent.", "Operator.", "Representative.", "Human.", "Person.", "Someone."]
# Short things a caller says that share sounds with an escape word but ask for nobody.
NON_REQUESTS = ["Agenda.", "Urgent.", "A gent's watch.", "Operation.", "Yes.", "No.", "Thanks.",
                "Hours."]

# id -> (voice, line). Wording and conditions differ from the fixture calls on purpose.
VOICES = {
    "piper_joe": ({"engine": "piper"}, {"gain_db": -3, "noise_db": -48}),
    "piper_joe_slow": ({"engine": "piper", "length_scale": 1.45}, {"gain_db": -4}),
    "piper_joe_fast_quiet": ({"engine": "piper", "length_scale": 0.75},
                             {"gain_db": -16, "noise_db": -44}),
    "flite_kal": ({"engine": "flite", "voice": "kal"}, {"gain_db": -3}),
    "flite_slt": ({"engine": "flite", "voice": "slt"}, {"gain_db": -5, "noise_db": -46}),
    "flite_awb": ({"engine": "flite", "voice": "awb"}, {"gain_db": -3}),
    "flite_rms_noisy": ({"engine": "flite", "voice": "rms"}, {"gain_db": -4, "noise_db": -38}),
    "flite_slt_slow": ({"engine": "flite", "voice": "slt", "stretch": 1.5}, {"gain_db": -6}),
    "flite_kal_fast_quiet": ({"engine": "flite", "voice": "kal", "stretch": 0.75},
                             {"gain_db": -15, "noise_db": -46}),
    "espeak_en_us": ({"engine": "espeak", "voice": "en-us", "rate": 150}, {"gain_db": -3}),
    "espeak_rp_slow": ({"engine": "espeak", "voice": "en-gb-x-rp", "rate": 120},
                       {"gain_db": -4, "noise_db": -46}),
    "espeak_en_gb_fast": ({"engine": "espeak", "voice": "en-gb", "rate": 210}, {"gain_db": -3}),
    "espeak_nyc_m3": ({"engine": "espeak", "voice": "en-us-nyc+m3", "rate": 160},
                      {"gain_db": -8, "noise_db": -42}),
    "espeak_us_f2_low": ({"engine": "espeak", "voice": "en-us+f2", "rate": 140, "pitch": 35},
                         {"gain_db": -6}),
}


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def main():
    only = set(os.environ.get("ONLY", "").split(",")) - {""}
    old = {}
    manifest_path = OUT / "manifest.json"
    if manifest_path.exists():
        old = {c["file"]: c for c in json.loads(manifest_path.read_text())["clips"]}
    clips = []
    with tempfile.TemporaryDirectory(prefix="warmline-hard-words-") as td:
        tmp = Path(td)
        for vid, (voice, line) in VOICES.items():
            for text in ESCAPES + NON_REQUESTS:
                rel = f"{vid}/{slug(text)}.ulaw"
                path = OUT / rel
                isha = mf.inputs_sha1(voice, line, text)
                prev = old.get(rel)
                if prev and prev["inputs_sha1"] == isha and path.exists() and \
                        (not only or vid not in only):
                    clips.append(prev)
                    continue
                wav = tmp / "out.wav"
                ulaw = mf.render_turn(voice, line, text, wav, tmp)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(ulaw)
                print(f"  rendered {rel}", flush=True)
                clips.append({
                    "file": rel,
                    "voice": vid,
                    "text": text,
                    "request": text in ESCAPES,
                    "inputs_sha1": isha,
                    "duration_s": round(len(ulaw) / 8000, 3),
                })
    manifest_path.write_text(json.dumps({"clips": clips}, indent=1) + "\n")
    print(f"{len(clips)} clips, {len(VOICES)} voices")


if __name__ == "__main__":
    main()

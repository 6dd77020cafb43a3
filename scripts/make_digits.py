#!/usr/bin/env python3
"""Render the digit-recall set: account and order numbers read out over a telephone line by
several voices in several pause patterns -> fixtures/digits/<voice>/<pattern>-<nn>.ulaw + manifest.json

    scripts/setup_tts.sh && python3 scripts/make_digits.py

Every clip is one caller turn: a topic and a lead-in ("I have a question about my bill. My
account number is") and then the number, said

  fast     as one run-on sentence, sped up (Piper length_scale 0.8, flite stretch 0.8, espeak +40 wpm)
  slow     digit by digit, each one its own breath, 0.3-0.6 s of silence between them
  chunked  in groups of two to four ("four four seven ... one nine"), 0.4-0.8 s between groups

with "oh" for zero, "double"/"triple" for repeats on some numbers. The topic routes the call to the
billing or orders queue, so the engine hands off with the number on the context card; the test
`tests/digit_recall.rs` reads it from there.

The line is make_fixtures.py's (sox -R, 8 kHz, sinc 300-3400, norm, gain, pad, band-limited
noise, G.711 mu-law), applied to the whole turn after the pieces are joined with exact digital
silence, stored as raw mu-law to keep the set small. Each piece is synthesised on its own and
trimmed of the engine's own leading/trailing silence so the gaps are the ones in the manifest.
Deterministic: numbers, gaps and styles come from a fixed seed, Piper is seeded per text and
sox runs with -R.
"""
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (re-execs inside .venv-tts when it exists)

OUT = mf.ROOT / "fixtures" / "digits"
PIPELINE = "warmline-digits-v1"
SEED = 11_3

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# id -> (voice, line, speed-up for the fast pattern)
VOICES = {
    "piper_joe": ({"engine": "piper"}, {"gain_db": -3, "noise_db": -48}),
    "piper_joe_quiet": ({"engine": "piper", "length_scale": 1.1},
                        {"gain_db": -15, "noise_db": -44}),
    "flite_kal": ({"engine": "flite", "voice": "kal"}, {"gain_db": -3}),
    "flite_slt_noisy": ({"engine": "flite", "voice": "slt"}, {"gain_db": -5, "noise_db": -40}),
    "espeak_en_us": ({"engine": "espeak", "voice": "en-us", "rate": 150}, {"gain_db": -3}),
    "espeak_rp": ({"engine": "espeak", "voice": "en-gb-x-rp", "rate": 140},
                  {"gain_db": -6, "noise_db": -46}),
}
PATTERNS = ["fast", "slow", "chunked"]
PER_CELL = 4  # numbers per voice x pattern: 6 x 3 x 4 = 72 numbers

LEAD_INS = {
    "account": [
        "I have a question about my bill. My account number is",
        "Hi, I have a question about a charge. The account number is",
        "It's about a payment. My account number is",
        "I need help with billing. Account number",
    ],
    "order": [
        "Hi, my order hasn't arrived. The order number is",
        "I'm calling about a delivery. My order number is",
        "Where is my parcel? Order number",
        "I want to return an item. The order number is",
    ],
}


def fast_voice(voice: dict) -> dict:
    v = dict(voice)
    if v["engine"] == "piper":
        v["length_scale"] = round(0.8 * v.get("length_scale", 1.0), 3)
    elif v["engine"] == "flite":
        v["stretch"] = 0.8
    else:
        v["rate"] = v.get("rate", 160) + 40
    return v


def make_number(rng: random.Random, field: str, style: str) -> str:
    n = rng.randint(5, 10) if field == "account" else rng.randint(5, 9)
    d = [str(rng.randint(0, 9)) for _ in range(n)]
    if d[0] == "0" and style != "oh":
        d[0] = str(rng.randint(1, 9))
    if style == "oh" and "0" not in d:
        d[rng.randrange(1, n)] = "0"
    if style in ("double", "triple"):
        k = 3 if style == "triple" else 2
        at = rng.randrange(0, n - k + 1)
        d[at:at + k] = [d[at]] * k
        # Keep the repeat exactly k long so "double"/"triple" says it all.
        if at + k < n and d[at + k] == d[at]:
            d[at + k] = str((int(d[at]) + 1) % 10)
        if at > 0 and d[at - 1] == d[at]:
            d[at - 1] = str((int(d[at]) + 2) % 10)
    return "".join(d)


def spoken_tokens(digits: str, style: str) -> list:
    """One token per spoken item: "four", "oh", "double five"."""
    out, i = [], 0
    zero = "oh" if style == "oh" else "zero"
    while i < len(digits):
        run = 1
        while i + run < len(digits) and digits[i + run] == digits[i]:
            run += 1
        word = zero if digits[i] == "0" else WORDS[int(digits[i])]
        if style == "triple" and run == 3:
            out.append(f"triple {word}")
        elif style in ("double", "triple") and run == 2:
            out.append(f"double {word}")
        else:
            out.extend([word] * run)
        i += run
    return out


def chunks(rng: random.Random, tokens: list) -> list:
    out, i = [], 0
    while i < len(tokens):
        k = min(len(tokens) - i, rng.randint(2, 4))
        if len(tokens) - i - k == 1:  # no lone digit at the end
            k += 1
        out.append(" ".join(tokens[i:i + k]))
        i += k
    return out


def plan():
    rng = random.Random(SEED)
    styles = ["plain", "plain", "oh", "double", "plain", "oh", "double", "triple"]
    clips, k = [], 0
    for vid, (voice, line) in VOICES.items():
        for pattern in PATTERNS:
            for j in range(PER_CELL):
                field = "account" if k % 2 == 0 else "order"
                style = styles[(k * 5) % len(styles)]
                digits = make_number(rng, field, style)
                tokens = spoken_tokens(digits, style)
                lead = LEAD_INS[field][(k // 2) % len(LEAD_INS[field])]
                if pattern == "fast":
                    pieces = [f"{lead} {', '.join(chunks(rng, tokens)) if k % 3 == 0 else ' '.join(tokens)}."]
                    gaps = []
                    speak = fast_voice(voice)
                elif pattern == "slow":
                    pieces = [lead] + [f"{t}." for t in tokens]
                    gaps = [round(rng.uniform(0.3, 0.6), 2) for _ in pieces[1:]]
                    speak = voice
                else:
                    pieces = [lead] + [f"{c}." for c in chunks(rng, tokens)]
                    gaps = [round(rng.uniform(0.4, 0.8), 2) for _ in pieces[1:]]
                    speak = voice
                clips.append({
                    "file": f"{vid}/{pattern}-{j:02}.ulaw",
                    "voice": vid,
                    "pattern": pattern,
                    "field": field,
                    "digits": digits,
                    "style": style,
                    "pieces": pieces,
                    "gaps_s": gaps,
                    "_speak": speak,
                    "_line": line,
                })
                k += 1
    return clips


def render_piece(voice: dict, text: str, out: Path, tmp: Path):
    raw = tmp / "piece-raw.wav"
    mf.tts(voice, text, raw)
    # 8 kHz mono, the engine's own silence trimmed at both ends (gaps are ours to set).
    mf.run(["sox", "-R", str(raw), "-b", "16", "-c", "1", str(out), "remix", "-", "rate", "8000",
            "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"])


def render_clip(clip: dict, tmp: Path) -> bytes:
    parts = []
    for i, text in enumerate(clip["pieces"]):
        if i:
            gap = tmp / f"gap{i}.wav"
            mf.run(["sox", "-R", "-n", "-r", "8000", "-b", "16", "-c", "1", str(gap), "trim", "0",
                    str(clip["gaps_s"][i - 1])])
            parts.append(gap)
        p = tmp / f"piece{i}.wav"
        render_piece(clip["_speak"], text, p, tmp)
        parts.append(p)
    joined, tel = tmp / "joined.wav", tmp / "tel.wav"
    mf.run(["sox", "-R", *map(str, parts), str(joined)])
    line = clip["_line"]
    mf.run(["sox", "-R", str(joined), str(tel), "sinc", "300-3400", "norm", "-3", "gain",
            str(float(line.get("gain_db", -3))), "pad", "0.15", "0.25"])
    src = tel
    if line.get("noise_db") is not None:
        dur = mf.subprocess.run(["soxi", "-D", str(tel)], check=True, capture_output=True,
                                text=True).stdout.strip()
        noise, mixed = tmp / "noise.wav", tmp / "mixed.wav"
        mf.run(["sox", "-R", "-n", "-r", "8000", "-b", "16", "-c", "1", str(noise), "synth", dur,
                "whitenoise", "sinc", "300-3400", "norm", str(float(line["noise_db"]))])
        mf.run(["sox", "-R", "-m", "-v", "1", str(tel), "-v", "1", str(noise), str(mixed)])
        src = mixed
    ulaw = tmp / "line.ulaw"
    mf.run(["sox", "-R", str(src), "-t", "raw", "-e", "mu-law", "-b", "8", "-r", "8000", "-c", "1",
            str(ulaw)])
    return ulaw.read_bytes()


def inputs_sha1(clip: dict) -> str:
    blob = json.dumps({"pipeline": PIPELINE, "voice": clip["_speak"], "line": clip["_line"],
                       "pieces": clip["pieces"], "gaps": clip["gaps_s"]}, sort_keys=True)
    return mf.hashlib.sha1(blob.encode()).hexdigest()


def main():
    only = set(os.environ.get("ONLY", "").split(",")) - {""}
    manifest_path = OUT / "manifest.json"
    old = {}
    if manifest_path.exists():
        old = {c["file"]: c for c in json.loads(manifest_path.read_text())["clips"]}
    out = []
    with tempfile.TemporaryDirectory(prefix="warmline-digits-") as td:
        tmp = Path(td)
        for clip in plan():
            isha = inputs_sha1(clip)
            path = OUT / clip["file"]
            prev = old.get(clip["file"])
            entry = {k: v for k, v in clip.items() if not k.startswith("_")}
            entry["inputs_sha1"] = isha
            if prev and prev.get("inputs_sha1") == isha and path.exists() and \
                    (not only or clip["voice"] not in only):
                out.append(prev)
                continue
            ulaw = render_clip(clip, tmp)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(ulaw)
            entry["duration_s"] = round(len(ulaw) / 8000, 3)
            print(f"  rendered {clip['file']} {clip['digits']}", flush=True)
            out.append(entry)
    keep = {c["file"] for c in out}
    for f in OUT.glob("*/*.ulaw"):
        if str(f.relative_to(OUT)) not in keep:
            f.unlink()
    manifest_path.write_text(json.dumps({"clips": out}, indent=1) + "\n")
    total = sum(c["duration_s"] for c in out)
    print(f"{len(out)} clips, {len(VOICES)} voices, {total:.0f} s, {int(total * 8)} KB")


if __name__ == "__main__":
    main()

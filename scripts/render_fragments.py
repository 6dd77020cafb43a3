#!/usr/bin/env python3
"""Render every fragment in voice-prompts/fragments/fragments.toml to voice-prompts/fragments/<id>.wav.

    scripts/render_fragments.sh [--only id,...] [--check] [--stats]

The server joins these at run time (src/speech/) to say sentences with numbers in them, so
each one is cut tight and levelled to the prompts it plays beside:
  Piper en_US-joe-medium, seeded per text (scripts/piper_voice.py: byte-identical re-renders)
  -> sox -R: mono, 3 dB headroom, 8 kHz, trim leading/trailing audio below -50 dBFS, no padding
     (the composer inserts the gaps)
  -> loudness: scale so the active-speech RMS (20 ms frames within 30 dB of the loudest) equals
     the median of the prompts' (voice-prompts/*.wav), peak held at or below -1 dBFS
  -> 8 kHz mono 16-bit PCM WAV.
--check renders into a temp dir and compares bytes with the committed WAVs (exit 1 on drift).
--stats prints the committed fragments' total duration and size.
"""
import argparse
import filecmp
import sys
import tempfile
import tomllib
import wave
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from piper_voice import Piper  # noqa: E402
from render_prompts import TRIM_DB, sox  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPTS_DIR = ROOT / "voice-prompts"
DIR = PROMPTS_DIR / "fragments"
LIST = DIR / "fragments.toml"
PEAK_MAX = 10 ** (-1 / 20) * 32767


def read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def write(path: Path, x: np.ndarray):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes())


def active_rms(x: np.ndarray) -> float:
    """RMS over the 20 ms frames within 30 dB of the loudest frame: the level of the voice
    itself, not of the pauses in it."""
    n = 160
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = rms[rms >= rms.max() * 10 ** (-30 / 20)]
    return float(np.sqrt((loud ** 2).mean()))


def prompts_level() -> float:
    levels = [active_rms(read(p)) for p in sorted(PROMPTS_DIR.glob("*.wav"))]
    return float(np.median(levels))


def render(piper: Piper, text: str, out: Path, tmp: Path, target_rms: float):
    raw = tmp / "piper.wav"
    trimmed = tmp / "trimmed.wav"
    piper.synth(text, raw)
    sox(str(raw), "-e", "signed-integer", "-b", "16", "-c", "1", str(trimmed),
        "remix", "-", "gain", "-3", "rate", "8000",
        "silence", "1", "0.02", TRIM_DB, "reverse", "silence", "1", "0.02", TRIM_DB, "reverse")
    x = read(trimmed)
    gain = target_rms / max(active_rms(x), 1.0)
    gain = min(gain, PEAK_MAX / max(np.abs(x).max(), 1.0))
    write(out, x * gain)


def stats():
    """Durations and sizes of the committed fragments."""
    wavs = sorted(DIR.glob("*.wav"))
    total = sum(p.stat().st_size for p in wavs)
    secs = sum(len(read(p)) / 8000 for p in wavs)
    digits = [read(DIR / f"d_{d}.wav") for d in range(10)]
    print(f"{len(wavs)} fragments, {secs:.1f} s, {total / 1024:.0f} KiB; "
          f"digits {min(map(len, digits)) / 8:.0f}-{max(map(len, digits)) / 8:.0f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated fragment ids")
    ap.add_argument("--check", action="store_true", help="verify the committed WAVs re-render identically")
    ap.add_argument("--stats", action="store_true", help="durations and sizes of the committed WAVs")
    a = ap.parse_args()
    if a.stats:
        stats()
        return
    fragments = tomllib.loads(LIST.read_text())
    only = {x for x in a.only.split(",") if x}
    unknown = only - fragments.keys()
    if unknown:
        sys.exit(f"unknown fragment ids: {sorted(unknown)}")
    target = prompts_level()
    print(f"target active RMS {20 * np.log10(target / 32768):.1f} dBFS (median of the prompts)")
    piper = Piper()
    bad = []
    with tempfile.TemporaryDirectory(prefix="warmline-fragments-") as td:
        tmp = Path(td)
        for fid, entry in fragments.items():
            if only and fid not in only:
                continue
            dest = DIR / f"{fid}.wav"
            out = tmp / f"{fid}.wav" if a.check else dest
            render(piper, entry["text"], out, tmp, target)
            x = read(out)
            same = ""
            if a.check:
                ok = dest.exists() and filecmp.cmp(out, dest, shallow=False)
                same = "  same" if ok else "  DIFFERS"
                if not ok:
                    bad.append(fid)
            level = 20 * np.log10(max(active_rms(x), 1.0) / 32768)
            print(f"{fid:24s} {len(x) / 8:5.0f} ms {level:6.1f} dBFS{same}", flush=True)
    if a.check:
        print("determinism:", "OK" if not bad else f"MISMATCH {bad}")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

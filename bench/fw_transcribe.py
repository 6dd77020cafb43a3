#!/usr/bin/env python3
"""Transcribe a `stt_fixture_run dump` with faster-whisper, for bench/stt_vs_faster_whisper.sh.

Reads the same raw f32 utterances warmline transcribes and writes the same JSON lines as
`stt_fixture_run run`, so bench/score.py treats both engines alike. Decoding settings mirror
warmline's: greedy, one pass, no timestamps, no VAD, no conditioning on earlier text, English,
and the dialplan's vocabulary as the initial prompt exactly when warmline's default passes it.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dump", type=Path, required=True, help="directory written by `stt_fixture_run dump`")
    p.add_argument("--model-dir", type=Path, required=True, help="CTranslate2 tiny.en directory")
    p.add_argument("--compute-type", default="int8", help="int8, float32, ...")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=3, help="each utterance's time is its median over the passes")
    p.add_argument("--prompt", choices=["on", "off", "default"], default="default",
                   help="pass the dialplan vocabulary as initial prompt; default: as warmline does by default")
    p.add_argument("--label", default=None)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


def load_clips(dump, prompt_choice):
    manifest = json.loads((dump / "manifest.json").read_text())
    clips = [
        (t["turn"], f, np.fromfile(dump / f, dtype="<f4"))
        for t in manifest["turns"]
        for f in t["utterances"]
    ]
    use = manifest["default_uses_prompt"] if prompt_choice == "default" else prompt_choice == "on"
    return (manifest["prompt"] if use else ""), clips


def transcribe(model, audio, prompt):
    segments, _ = model.transcribe(
        audio,
        language="en",
        beam_size=1,
        best_of=1,
        temperature=0.0,
        without_timestamps=True,
        vad_filter=False,
        condition_on_previous_text=False,
        initial_prompt=prompt or None,
    )
    # `segments` is lazy: decoding happens while it is consumed, so this is inside the timing.
    return "".join(s.text for s in segments).strip()


def main():
    args = parse_args()
    label = args.label or f"faster-whisper {args.compute_type}"
    prompt, clips = load_clips(args.dump, args.prompt)
    model = WhisperModel(
        str(args.model_dir),
        device="cpu",
        compute_type=args.compute_type,
        cpu_threads=args.threads,
        num_workers=1,
    )
    print(f"{label}: threads={args.threads} prompt={'no' if not prompt else 'yes'}", file=sys.stderr)
    # Not timed, like warmline's run: the first call allocates and warms up.
    transcribe(model, clips[0][2], prompt)

    times = [[] for _ in clips]
    hyps = [None] * len(clips)
    for _ in range(max(1, args.passes)):
        for i, (_, name, audio) in enumerate(clips):
            t0 = time.perf_counter()
            text = transcribe(model, audio, prompt)
            times[i].append(time.perf_counter() - t0)
            if hyps[i] is None:
                hyps[i] = text
            elif hyps[i] != text:
                print(f"warning: {name} changed between passes: {text!r}", file=sys.stderr)

    with args.out.open("w") as out:
        for (turn, name, audio), t, hyp in zip(clips, times, hyps):
            line = {
                "engine": label,
                "turn": turn,
                "file": name,
                "audio_s": len(audio) / 16000.0,
                "secs": statistics.median_low(t),
                "hyp": hyp,
            }
            out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()

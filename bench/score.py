#!/usr/bin/env python3
"""Score speech-to-text runs over the fixture turns: speed and word error rate per engine.

Input: the dump's manifest.json (reference text per turn) and any number of JSON-lines files
written by `stt_fixture_run run` or bench/fw_transcribe.py. Prints a markdown table, and the
ratio of every engine's time to each faster-whisper run (< 1 means faster than it).

WER is computed over all turns at once (total edits / total reference words) after putting
reference and hypothesis into one normal form: lowercase, no punctuation, numbers as single
digits ("seven seven one" / "771" / "seventy seven one" all become "7 7 1"), a few spelling
variants merged. A turn cut into several utterances is scored on their joined text.
"""

import argparse
import json
import re
import statistics
from collections import OrderedDict
from pathlib import Path

UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
SCALES = {"thousand": 1000, "million": 1000_000}
REPEATS = {"double": 2, "triple": 3}
ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
            "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()
# Spellings Whisper (American English) and the fixture scripts (partly British) disagree on.
SPELLING = {"ok": "okay", "neighbour": "neighbor"}
JOINS = [("wi fi", "wifi"), ("good bye", "goodbye"), ("e mail", "email")]


def normalize(text):
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"\$(\d+)\.(\d\d)\b", r"\1 dollars \2", t)
    t = re.sub(r"\$(\d+)", r"\1 dollars", t)
    t = re.sub(r"(\d),(\d)", r"\1\2", t)
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_word(int(m.group(1))) or m.group(1), t)
    t = re.sub(r"[-.,]", " ", t)
    t = re.sub(r"[^a-z0-9' ]", " ", t).replace("'", "")
    t = " " + " ".join(t.split()) + " "
    for a, b in JOINS:
        t = t.replace(f" {a} ", f" {b} ")
    words = [SPELLING.get(w, w) for w in t.split()]
    return split_digits(numbers_to_digits(words))


def ordinal_word(n):
    return ORDINALS[n - 1] if 1 <= n <= len(ORDINALS) else None


def numbers_to_digits(words):
    """Runs of number words become digit strings; "seven seven" stays two numbers."""
    out, num, repeat = [], NumberRun(), 1
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w == "and" and num.last in ("hundred", "scale") and num.accepts(nxt):
            continue  # "two hundred and five" is one number
        if w in REPEATS and (nxt in UNITS or (nxt.isdigit() and len(nxt) == 1)):
            out.extend(num.flush())
            repeat = REPEATS[w]
            continue
        if repeat > 1 and w.isdigit() and len(w) == 1:
            out.extend([w] * repeat)  # "double 8"
            repeat = 1
            continue
        if num.accepts(w):
            num.push(w)
            if repeat > 1 and (w in UNITS):
                out.extend(num.flush() * repeat)
            repeat = 1
            continue
        out.extend(num.flush())
        if num.accepts(w):
            num.push(w)
        else:
            out.append(w)
        repeat = 1
    out.extend(num.flush())
    return out


class NumberRun:
    """One spoken number being read: "three hundred forty two", "twenty", "nine"."""

    def __init__(self):
        self.total, self.cur, self.last = 0, None, None

    def accepts(self, w):
        if w in UNITS:
            # "twenty three", "hundred five", "hundred twelve"; never "seven seven" or "twenty twelve".
            if self.last is None:
                return True
            after = ("tens", "hundred", "scale") if UNITS[w] < 10 else ("hundred", "scale")
            return self.last in after
        if w in TENS:
            return self.last in (None, "hundred", "scale")
        if w == "hundred":
            return self.last in ("unit", "teen", "tens")
        if w in SCALES:
            return self.last in ("unit", "teen", "tens", "hundred")
        return False

    def push(self, w):
        if w in UNITS:
            self.cur = (self.cur or 0) + UNITS[w]
            self.last = "unit" if UNITS[w] < 10 else "teen"
        elif w in TENS:
            self.cur = (self.cur or 0) + TENS[w]
            self.last = "tens"
        elif w == "hundred":
            self.cur *= 100
            self.last = "hundred"
        else:
            self.total += self.cur * SCALES[w]
            self.cur = 0
            self.last = "scale"

    def flush(self):
        if self.last is None:
            return []
        value = self.total + (self.cur or 0)
        self.total, self.cur, self.last = 0, None, None
        return [str(value)]


def split_digits(words):
    out = []
    for w in words:
        out.extend(list(w) if w.isdigit() else [w])
    return out


def edit_distance(ref, hyp):
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def load_runs(paths):
    runs = OrderedDict()
    for p in paths:
        for line in Path(p).read_text().splitlines():
            r = json.loads(line)
            runs.setdefault(r["engine"], []).append(r)
    return runs


def score(manifest, rows):
    hyp_by_turn = {}
    for r in rows:
        hyp_by_turn.setdefault(r["turn"], []).append(r["hyp"])
    edits = words = 0
    wrong = []
    for t in manifest["turns"]:
        ref = normalize(t["reference"])
        hyp = normalize(" ".join(hyp_by_turn.get(t["turn"], [])))
        e = edit_distance(ref, hyp)
        edits, words = edits + e, words + len(ref)
        if e:
            wrong.append((t["turn"], e, " ".join(ref), " ".join(hyp)))
    secs = [r["secs"] for r in rows]
    audio = sum(r["audio_s"] for r in rows)
    return {
        "utts": len(rows),
        "total": sum(secs),
        "median": statistics.median(secs),
        "rtf": sum(secs) / audio,
        "wer": 100.0 * edits / words,
        "edits": edits,
        "words": words,
        "wrong": wrong,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--errors", action="store_true", help="list the turns each engine got wrong")
    p.add_argument("results", nargs="+")
    args = p.parse_args()
    manifest = json.loads(args.manifest.read_text())
    runs = {name: score(manifest, rows) for name, rows in load_runs(args.results).items()}
    peers = [n for n in runs if n.startswith("faster-whisper")]

    audio = sum(r["audio_s"] for rows in load_runs(args.results).values() for r in rows) / max(1, len(runs))
    print(f"{len(manifest['turns'])} turns, {audio:.1f} s of audio per engine\n")
    head = "| engine | utterances | total s | median s/utt | RTF | x real time | WER % (edits/words) |"
    head += "".join(f" time vs {p} |" for p in peers)
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, s in runs.items():
        row = (f"| {name} | {s['utts']} | {s['total']:.2f} | {s['median']:.3f} | {s['rtf']:.4f} "
               f"| {1 / s['rtf']:.1f} | {s['wer']:.2f} ({s['edits']}/{s['words']}) |")
        row += "".join(f" {s['total'] / runs[p]['total']:.2f} |" for p in peers)
        print(row)
    if args.errors:
        for name, s in runs.items():
            print(f"\n## {name}: {len(s['wrong'])} turns with errors")
            for turn, e, ref, hyp in s["wrong"]:
                print(f"- {turn} ({e}): ref `{ref}`\n  {' ' * len(turn)}      hyp `{hyp}`")


if __name__ == "__main__":
    main()

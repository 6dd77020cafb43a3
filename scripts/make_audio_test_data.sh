#!/usr/bin/env bash
# Regenerates the telephone-speech fixtures under tests/data/audio/ used by
# src/audio/frontend.rs and src/audio/vad.rs tests and benches/media_path.rs.
# Needs espeak-ng, flite and sox. Output is deterministic (no dither).
#
# Each fixture is raw 8 kHz μ-law (what Twilio streams) with 0.5 s of silence before the
# speech and 1.0 s after it. The sidecar <name>.txt holds "start_ms end_ms" of the speech,
# measured after trimming the synthesiser's own leading/trailing silence, so the tests know
# where the speech really is.
set -euo pipefail

cd "$(dirname "$0")/.."
out=tests/data/audio
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# make <name> <wav from a synthesiser>
make() {
    local name=$1 src=$2
    # Trim silence below -60 dBFS at both ends, then make it sound like a phone line:
    # 8 kHz, 300-3400 Hz band, μ-law.
    sox -D "$src" "$tmp/$name.trim.wav" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse \
        rate 8000 sinc 300-3400 channels 1
    local dur
    dur=$(soxi -D "$tmp/$name.trim.wav")
    sox -D "$tmp/$name.trim.wav" -r 8000 -c 1 -e u-law -t raw "$out/$name.ulaw" pad 0.5 1.0
    awk -v d="$dur" 'BEGIN { printf "500 %d\n", 500 + d * 1000 + 0.5 }' > "$out/$name.txt"
    echo "$name: $(cat "$out/$name.txt") ($(stat -c %s "$out/$name.ulaw") bytes)"
}

espeak-ng -w "$tmp/billing.wav" \
    "Hello, I am calling about my bill. It seems I was charged twice this month."
make billing "$tmp/billing.wav"

# Digits read out with short pauses, the case the adaptive hangover exists for.
flite -t "My account number is four seven one, nine nine two, three zero five." \
    -o "$tmp/digits.wav"
make digits "$tmp/digits.wav"

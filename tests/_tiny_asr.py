"""Shared fixtures for the reliability tests: a tiny DS2 preset, synthetic corpora and subprocess helpers.

The audio is synthetic (tones in noise), so the tests need no speech synthesiser and run in seconds;
what they check (skips, resume, non-finite steps, distribution, memory) does not depend on content.
"""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from speechkit.asr.deepspeech2 import DeepSpeech2Config
from speechkit.asr.train import TrainConfig
from speechkit.config import save_yaml
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.frontend import FrontendConfig
from speechkit.training import OptimizerConfig

__all__ = ["TEXTS", "tiny_config", "write_corpus", "write_preset", "speechkit_command", "subprocess_env", "run_python",
           "rss_mb", "weights", "randomise_weights"]

TEXTS = ["AB", "CAB", "BAD", "DAB", "ACE", "BED", "FED", "CAFE", "DEAF", "FACE", "BEAD", "FADE"]


def tiny_config(**overrides):
    """A DS2 preset of about 2,500 parameters: 16 mel bins, one 4-filter convolution, one GRU of 8 units."""
    base = dict(
        frontend=FrontendConfig(kind="mel", n_mels=16),
        model=DeepSpeech2Config(conv_filters=(4,), conv_kernels=((3, 5),), conv_strides=((2, 2),), rnn_layers=1,
                                rnn_units=8),
        optimizer=OptimizerConfig(learning_rate=3e-3, warmup_steps=1, schedule="constant"),
        batch_size=4, epochs=2, checkpoint_every=2, log_every=1, dev_batch_size=4)
    base.update(overrides)
    return TrainConfig(**base)


def write_corpus(root, texts=TEXTS, *, seed=0, speaker="s"):
    """Write one short tone-in-noise WAV per text (0.3 s plus 0.05 s per index) and a manifest; return its path."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    utterances = []
    for i, text in enumerate(texts):
        seconds = 0.3 + 0.05 * i
        t = np.arange(int(16000 * seconds)) / 16000
        audio = 0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        path = os.path.join(root, f"u{i:02d}.wav")
        sf.write(path, audio.astype(np.float32), 16000, subtype="PCM_16")
        utterances.append(Utterance(id=f"u{i:02d}", audio=path, duration=seconds, text=text, speaker=speaker))
    manifest = os.path.join(root, "train.jsonl")
    write_manifest(manifest, utterances)
    return manifest


def write_preset(path, config):
    save_yaml(path, config)
    return path


def subprocess_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def speechkit_command(*args):
    return [sys.executable, "-m", "speechkit", *args]


def run_python(code, *, timeout, env=None):
    """Run ``code`` in a fresh interpreter; return its last stdout line parsed as JSON."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            env=env or subprocess_env())
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def rss_mb():
    """Resident set size of this process now (not the peak), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def weights(path):
    """Every dataset of a Keras ``.weights.h5`` file, by name."""
    import h5py

    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return values


def randomise_weights(model, seed):
    """Weights of order one everywhere, batch-norm variances positive: every path shapes the output."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))
        else:
            w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))

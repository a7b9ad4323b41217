"""Run exported models in a fresh interpreter that imports only TensorFlow and NumPy (never speechkit).

Usage: python _fresh_tf_check.py JOBS.json

JOBS.json holds a list of jobs, each ``{"kind": "saved_model" | "tflite", "path": ..., "signature": ...,
"inputs": INPUTS.npz, "outputs": OUTPUTS.npz}``. A SavedModel job calls the signature once with
every array of INPUTS.npz as a keyword argument; a TFLite job calls the signature runner once per
batch row (TFLite exports take batch 1), with ``lengths`` selecting the row's valid samples, and
stores row ``i``'s outputs as ``<name>_<i>``. Outputs are written with ``numpy.savez``. The script
fails if speechkit was imported, so the exports are proven self-contained.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _saved_model(job):
    signature = tf.saved_model.load(job["path"]).signatures[job["signature"]]
    with np.load(job["inputs"]) as data:
        inputs = {name: tf.constant(data[name]) for name in data.files}
    outputs = signature(**inputs)
    return {name: np.array(value.numpy().tolist(), dtype=bytes) if value.dtype == tf.string else value.numpy()
            for name, value in outputs.items()}


def _tflite(job):
    runner = tf.lite.Interpreter(model_path=job["path"]).get_signature_runner(job["signature"])
    with np.load(job["inputs"]) as data:
        waveform, lengths = data["waveform"], data["lengths"]
    results = {}
    for i, n in enumerate(lengths):
        out = runner(waveform=waveform[i:i + 1, :n], lengths=np.array([n], np.int32))
        results.update({f"{name}_{i}": np.array(value) for name, value in out.items()})
    return results


def main(path):
    with open(path, encoding="utf-8") as f:
        jobs = json.load(f)
    for job in jobs:
        results = (_saved_model if job["kind"] == "saved_model" else _tflite)(job)
        np.savez(job["outputs"], **results)
    leaked = sorted(name for name in sys.modules if name == "speechkit" or name.startswith("speechkit."))
    if leaked:
        raise SystemExit(f"speechkit modules were imported: {leaked}")


if __name__ == "__main__":
    main(sys.argv[1])

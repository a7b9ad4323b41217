"""Stream a wav file through an exported speechkit ASR SavedModel, chunk by chunk, with TensorFlow only.

Usage::

    python examples/stream_saved_model.py EXPORT speech.wav [--chunk-ms 160] [--log-probs out.npz]

``EXPORT`` is written by ``speechkit export asr RUN --out EXPORT`` for a streaming model (for example one
trained from ``models/ds2-streaming.yaml``). The client calls three signatures and never looks inside the
state: ``stream_init()`` gives the initial state, ``stream_step(audio_chunk, **state)`` returns the
``log_probs`` of the output frames that became final plus the next state under the same names, and
``stream_finish(**state)`` returns the last frames. Greedy CTC decoding (best class per frame, collapse
repeats, drop the blank at index 0) uses ``EXPORT/vocabulary.json``. The wav must be 16-bit PCM at the
model's sample rate (``EXPORT/export.json``), e.g. ``sox in.flac -r 16000 -b 16 -c 1 speech.wav``.
"""

import argparse
import json
import os

import numpy as np
import tensorflow as tf


def greedy(log_probs, labels):
    """Best-path CTC transcript of float [frames, vocab] log-probabilities."""
    best = np.argmax(log_probs, axis=-1)
    keep = [int(b) for i, b in enumerate(best) if b != 0 and (i == 0 or b != best[i - 1])]
    return " ".join("".join(labels[i] for i in keep).split())


def read_wav(path, sample_rate):
    """float32 [samples] of a 16-bit PCM wav, channels averaged."""
    audio, rate = tf.audio.decode_wav(tf.io.read_file(path))
    if int(rate) != sample_rate:
        raise SystemExit(f"{path}: {int(rate)} Hz; the model takes {sample_rate} Hz")
    return tf.reduce_mean(audio, axis=1).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("wav")
    parser.add_argument("--chunk-ms", type=float, default=160.0)
    parser.add_argument("--log-probs", default=None, help="write the streamed log-probabilities to this .npz")
    args = parser.parse_args()
    with open(os.path.join(args.export_dir, "export.json"), encoding="utf-8") as f:
        sample_rate = json.load(f)["sample_rate"]
    with open(os.path.join(args.export_dir, "vocabulary.json"), encoding="utf-8") as f:
        vocabulary = json.load(f)
    labels = list(vocabulary["characters"])
    labels.insert(vocabulary["blank_index"], "")
    model = tf.saved_model.load(args.export_dir).signatures
    audio = read_wav(args.wav, sample_rate)
    chunk = max(1, int(args.chunk_ms * sample_rate / 1000))

    state = model["stream_init"]()
    parts, shown = [], ""
    for start in range(0, len(audio), chunk):
        out = model["stream_step"](audio_chunk=tf.constant(audio[start:start + chunk]), **state)
        state = {name: out[name] for name in state}
        parts.append(out["log_probs"].numpy())
        text = greedy(np.concatenate(parts), labels)
        if text != shown:
            shown = text
            print(f"{min(start + chunk, len(audio)) / sample_rate:6.2f}\t{text}", flush=True)
    parts.append(model["stream_finish"](**state)["log_probs"].numpy())
    log_probs = np.concatenate(parts)
    print(f"{args.wav}\t{greedy(log_probs, labels)}")
    if args.log_probs:
        np.savez(args.log_probs, log_probs=log_probs)


if __name__ == "__main__":
    main()

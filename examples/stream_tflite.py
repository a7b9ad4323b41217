"""Stream a wav file through a speechkit ASR ``model.tflite``, chunk by chunk, with the TFLite interpreter only.

Usage::

    python examples/stream_tflite.py EXPORT/model.tflite speech.wav [--chunk-ms 160] [--log-probs out.npz]

The same three signatures as the SavedModel (``stream_init``, ``stream_step``, ``stream_finish``; see
``examples/stream_saved_model.py``) with the same explicit state tensors, as a mobile client drives them.
It uses ``tflite_runtime`` when installed, else ``tf.lite``; the wav is read with the standard library
(16-bit PCM at the model's rate, from ``export.json`` next to the model) and ``vocabulary.json`` next to
the model gives the characters.
"""

import argparse
import json
import os
import wave

import numpy as np

try:
    from tflite_runtime.interpreter import Interpreter
except ImportError:
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter


def greedy(log_probs, labels):
    """Best-path CTC transcript of float [frames, vocab] log-probabilities."""
    best = np.argmax(log_probs, axis=-1)
    keep = [int(b) for i, b in enumerate(best) if b != 0 and (i == 0 or b != best[i - 1])]
    return " ".join("".join(labels[i] for i in keep).split())


def read_wav(path, sample_rate):
    """float32 [samples] of a 16-bit PCM wav, channels averaged."""
    with wave.open(path, "rb") as f:
        if f.getsampwidth() != 2 or f.getframerate() != sample_rate:
            raise SystemExit(f"{path}: need 16-bit PCM at {sample_rate} Hz")
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, f.getnchannels())
    return (data.astype(np.float32) / 32768.0).mean(axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("wav")
    parser.add_argument("--chunk-ms", type=float, default=160.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-probs", default=None, help="write the streamed log-probabilities to this .npz")
    args = parser.parse_args()
    folder = os.path.dirname(os.path.abspath(args.model))
    with open(os.path.join(folder, "export.json"), encoding="utf-8") as f:
        sample_rate = json.load(f)["sample_rate"]
    with open(os.path.join(folder, "vocabulary.json"), encoding="utf-8") as f:
        vocabulary = json.load(f)
    labels = list(vocabulary["characters"])
    labels.insert(vocabulary["blank_index"], "")
    interpreter = Interpreter(model_path=args.model, num_threads=args.threads)
    init, step, finish = (interpreter.get_signature_runner(name)
                          for name in ("stream_init", "stream_step", "stream_finish"))
    audio = read_wav(args.wav, sample_rate)
    chunk = max(1, int(args.chunk_ms * sample_rate / 1000))

    state = init()
    parts, shown = [], ""
    for start in range(0, len(audio), chunk):
        out = step(audio_chunk=audio[start:start + chunk], **state)
        state = {name: out[name] for name in state}
        parts.append(out["log_probs"])
        text = greedy(np.concatenate(parts), labels)
        if text != shown:
            shown = text
            print(f"{min(start + chunk, len(audio)) / sample_rate:6.2f}\t{text}", flush=True)
    parts.append(finish(**state)["log_probs"])
    log_probs = np.concatenate(parts)
    print(f"{args.wav}\t{greedy(log_probs, labels)}")
    if args.log_probs:
        np.savez(args.log_probs, log_probs=log_probs)


if __name__ == "__main__":
    main()

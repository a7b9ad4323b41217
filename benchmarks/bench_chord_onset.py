"""Does a chord-conditioned WaveNet know its label where only the label can tell? Teacher-forced, no sampling.

Usage: python benchmarks/bench_chord_onset.py RUN [--manifest data/triads/test.jsonl] [--clips 24]
           [--onset-samples 400]

Generation from silence must strike the requested chord in its first periods; after them, the clip's own
history names the notes. So for each test clip this scores its first ``--onset-samples`` samples, after a
receptive field of silence (as generation and the onset training windows start), under every one of the
run's chord labels, and reports:

- the mean nats per sample under the clip's own label, and under the other labels;
- how often the clip's own label scores best of all 48 (chance 1/48): the model recognises the chord from
  its onset only if the label shapes its predictions there.

A run that ignores its label scores every label alike and picks the right one by chance.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit import audio as audio_io  # noqa: E402
from speechkit.data.manifest import even_spread, read_manifest  # noqa: E402
from speechkit.frontend import mu_law_encode  # noqa: E402
from speechkit.music.chords import same_chord  # noqa: E402
from speechkit.vocoder.generation import load_vocoder  # noqa: E402
from speechkit.vocoder.wavenet import silence_class  # noqa: E402


def onset_nats(vocoder, audio, onset_samples):
    """float [labels]: mean nats per sample of the clip's first ``onset_samples`` under each label."""
    model, frontend = vocoder.model, vocoder.frontend
    classes = mu_law_encode(audio[:onset_samples], frontend.mu).numpy()
    silence = np.full(model.receptive_field().samples + 1, silence_class(frontend))
    inputs = np.concatenate([silence, classes[:-1]])
    labels = len(vocoder.speakers)
    logits = model({"audio": np.tile(inputs[np.newaxis], [labels, 1]),
                    "speaker": np.arange(labels, dtype=np.int32)}).numpy()[:, -len(classes):]
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(log_probs, classes[np.newaxis, :, np.newaxis], axis=-1)[..., 0].mean(axis=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a chord-conditioned WaveNet run (speakers.json lists the chord labels)")
    p.add_argument("--manifest", default="data/triads/test.jsonl")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--onset-samples", type=int, default=400)
    args = p.parse_args()
    vocoder = load_vocoder(args.run)
    if not vocoder.speakers:
        sys.exit(f"{args.run}: not a label-conditioned run")
    own, others, right = [], [], []
    for utterance in even_spread(read_manifest(args.manifest), args.clips):
        audio = audio_io.load(utterance.audio, sample_rate=vocoder.frontend.sample_rate)
        nats = onset_nats(vocoder, audio, args.onset_samples)
        index = vocoder.speaker_index(utterance.speaker)
        own.append(nats[index])
        others.append(np.delete(nats, index).mean())
        right.append(same_chord(vocoder.speakers[int(np.argmin(nats))], utterance.speaker))
    print(row(f"{len(own)} test clips, their first {args.onset_samples} samples after silence: "
              f"{np.mean(own):.3f} nats/sample under their own label, {np.mean(others):.3f} under the others; "
              f"own label best of {len(vocoder.speakers)} in {np.mean(right):.1%}"))


if __name__ == "__main__":
    main()

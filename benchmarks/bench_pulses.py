"""Does a ``pulse_input`` vocoder follow its pulses? Teacher-forced loss with and without them, and the drawn spikes.

Usage: python benchmarks/bench_pulses.py RUN [--manifest data/release/test.jsonl] [--batches 8] [--seconds 1.5]

1. Teacher forcing on windows of test utterances (unseen speakers), drawn as training draws them: the
   cross-entropy (nats per sample) with the pulses of training (on the residual's own peaks), with the free
   pulses of generation (same period, arbitrary phase), and with no pulse features; overall and at the
   aligned pulses. A network that uses its input scores far lower at the pulses with the aligned train.
2. Generation from the first utterance's mel: the mean magnitude of the drawn residual at the free pulses
   over its mean over voiced samples, and the same ratio for the true residual at its aligned pulses; and
   the period-to-period correlation of each over the voiced samples (``e[t]`` against ``e[t - T]``, ``T``
   the implied period), which ``bench_excitation.py`` shows the filter's output needs, at about 0.8, to
   sound voiced.
"""

import argparse
import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _row import row  # noqa: E402
from speechkit import audio as audio_io  # noqa: E402
from speechkit.data.manifest import even_spread, read_manifest  # noqa: E402
from speechkit.frontend import mu_law_decode  # noqa: E402
from speechkit.vocoder.data import WindowSampler, history_frames, load_corpus, window_dataset  # noqa: E402
from speechkit.vocoder.generation import load_vocoder  # noqa: E402
from speechkit.vocoder.pulses import aligned_pulses, free_pulses, implied_pitch, sample_frames  # noqa: E402
from speechkit.vocoder.wavenet import conditioning_mel, silence_class  # noqa: E402


def teacher_forced(model, utterances, batches):
    config, frontend = model.config, model.frontend
    corpus = load_corpus([(u.id, u.audio, u.speaker) for u in utterances], sample_rate=frontend.sample_rate,
                         min_samples=32 * frontend.hop_length, source="test")
    sampler = WindowSampler(corpus, frontend=frontend, window_frames=32, context=config.cond_context, batch_size=4,
                            seed=7, history=history_frames(model.receptive_field().samples, frontend.hop_length),
                            lpc_order=config.lpc_order, lpc_normalize=config.lpc_normalize, pulses=True)
    data = iter(window_dataset(sampler, model_config=config))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    sums = {}
    for _ in range(batches):
        inputs, target = next(data)
        at_pulses = inputs["pulses"].numpy()[:, -target.shape[1]:, 0] > 0
        variants = {"aligned": inputs, "free": {k: v for k, v in inputs.items() if k != "pulses"},
                    "none": {**inputs, "pulses": np.zeros_like(inputs["pulses"].numpy())}}
        for name, given in variants.items():
            nats = loss(target, model(given)[:, -target.shape[1]:]).numpy()
            sums.setdefault(name, []).append(nats.mean())
            sums.setdefault(name + " at pulses", []).append(nats[at_pulses].mean())
    return {name: float(np.mean(values)) for name, values in sums.items()}


def period_correlation(signal, period, voiced):
    """The correlation of ``signal[t]`` with ``signal[t - period[t]]`` over the voiced samples."""
    t = np.flatnonzero(voiced)
    lag = np.rint(period[t]).astype(int)
    t, lag = t[t >= lag], lag[t >= lag]
    return float(np.corrcoef(signal[t], signal[t - lag])[0, 1])


def drawn_spikes(vocoder, audio):
    model, frontend = vocoder.model, vocoder.frontend
    mel = conditioning_mel(audio[np.newaxis], frontend=frontend, context=model.config.cond_context)
    pulses = free_pulses(mel, frontend=frontend, context=model.config.cond_context, num_samples=len(audio))[0].numpy()
    state = {k: v.numpy() for k, v in model.initial_state(1).items()}
    noise = np.random.default_rng(0).random((1, len(audio)), dtype=np.float32)
    classes, _ = vocoder._backend("fast").run(np.array([silence_class(frontend)]), state, len(audio), noise=noise,
                                              cond=model.upsample(mel, len(audio)).numpy())
    signed = mu_law_decode(classes, frontend.mu).numpy()[0]
    drawn = np.abs(signed)
    voiced, impulses = pulses[:, 3] > 0.5, pulses[:, 0] > 0.5
    _, residual = vocoder._residual(audio)
    period, voicing = implied_pitch(mel, frontend=frontend)
    index = sample_frames(len(audio), hop=frontend.hop_length, context=model.config.cond_context,
                          frames=mel.shape[1]).numpy()
    aligned = aligned_pulses(residual, period.numpy()[0, index], voicing.numpy()[0, index])
    true = np.abs(residual)
    per_sample = period.numpy()[0, index]
    return (drawn[impulses].mean() / drawn[voiced].mean(),
            true[aligned[:, 0] > 0.5].mean() / true[aligned[:, 3] > 0.5].mean(),
            period_correlation(signed, per_sample, voiced), period_correlation(residual, per_sample, voiced))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--manifest", default="data/release/test.jsonl")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.5)
    args = p.parse_args()
    vocoder = load_vocoder(args.run)
    if not vocoder.config.pulse_input:
        sys.exit(f"{args.run}: not a pulse_input model")
    utterances = even_spread(read_manifest(args.manifest), 40)
    nats = teacher_forced(vocoder.model, utterances, args.batches)
    audio = audio_io.load(utterances[0].audio, sample_rate=vocoder.frontend.sample_rate)
    drawn, true, drawn_corr, true_corr = drawn_spikes(vocoder, audio[:int(args.seconds * vocoder.frontend.sample_rate)])
    print(row("teacher-forced nats per sample: " + ", ".join(f"{k} {v:.3f}" for k, v in nats.items())
              + f"; drawn residual at the free pulses / over voiced samples: {drawn:.2f}x "
              f"(the true residual at its aligned pulses: {true:.2f}x); period-to-period correlation over voiced "
              f"samples: drawn {drawn_corr:.2f}, true residual {true_corr:.2f}"))


if __name__ == "__main__":
    main()

"""Training windows with real history: inputs, mel and targets align with the whole utterance, and the
scored positions get the same logits as the full teacher-forced pass over the utterance."""

import keras
import numpy as np
import pytest

from speechkit import audio as audio_io
from speechkit.frontend import FrontendConfig, mu_law_encode
from speechkit.vocoder.data import WindowSampler, history_frames, load_corpus
from speechkit.vocoder.wavenet import WaveNet, WaveNetConfig, conditioning_mel, network_input, silence_class

FRONTEND = FrontendConfig(kind="mel", normalize=False)
HOP = FRONTEND.hop_length


def _corpus(tmp_path, seconds=(0.09, 0.11)):
    rng = np.random.default_rng(0)
    items = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * 16000)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (170 + 50 * i) * t) + 0.02 * rng.standard_normal(t.size)
        path = str(tmp_path / f"a{i}.wav")
        audio_io.save(path, wave.astype(np.float32))
        items.append((f"a{i}", path, "x"))
    return load_corpus(items, sample_rate=16000, min_samples=4 * HOP, source="test")


def test_history_frames_cover_the_receptive_field():
    assert history_frames(2047, 160) == 13
    assert history_frames(161, 160) == 1 and history_frames(162, 160) == 2
    assert history_frames(1, 160) == 0


def test_window_with_history_aligns_with_the_zero_extended_utterance(tmp_path):
    corpus = _corpus(tmp_path)
    history, frames, context = 3, 4, 2
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=frames, context=context, batch_size=6, seed=1,
                            history=history)
    starts_seen = set()
    for step in range(6):
        batch = sampler.batch(step)
        assert batch["prev"].shape == (6, (history + frames) * HOP) and batch["target"].shape == (6, frames * HOP)
        mel = sampler.conditioning(batch["segment"]).numpy()
        assert mel.shape[1] == history + frames + 2 * context
        for row in range(6):
            u, k = batch["utterance"][row], int(batch["start"][row])
            starts_seen.add(k)
            audio = corpus.audio(u)
            padded = np.concatenate([np.zeros(history * HOP, np.float32), audio])
            full_mel = conditioning_mel(padded, frontend=FRONTEND, context=context).numpy()
            np.testing.assert_allclose(mel[row], full_mel[k:k + history + frames + 2 * context], atol=2e-4)
            classes = mu_law_encode(padded, FRONTEND.mu).numpy()
            scored = classes[(history + k) * HOP:(history + k + frames) * HOP]
            np.testing.assert_array_equal(batch["target"][row], scored)
            first = k * HOP - 1
            prev = (classes[first:first + (history + frames) * HOP] if first >= 0 else
                    np.concatenate([[silence_class(FRONTEND)], classes[:(history + frames) * HOP - 1]]))
            np.testing.assert_array_equal(batch["prev"][row], prev)
    assert {0, 1, 2, 5} <= starts_seen, "windows at, near and away from an utterance start"


@pytest.mark.parametrize("pitch", [0, 16], ids=["mel", "mel-and-pitch"])
def test_scored_positions_get_the_full_pass_logits_and_loss_counts_only_them(tmp_path, pitch):
    config = WaveNetConfig(layers_per_stack=4, stacks=2, residual_channels=8, gate_channels=8, skip_channels=8,
                           head_channels=16, cond_channels=8, pitch_features=pitch)
    model = WaveNet(config, FRONTEND)
    model.build()
    rf = model.receptive_field().samples
    history = history_frames(rf, HOP)
    corpus = _corpus(tmp_path, seconds=(0.2,))
    sampler = WindowSampler(corpus, frontend=FRONTEND, window_frames=3, context=config.cond_context, batch_size=8,
                            seed=0, history=history)
    batch = sampler.batch(0)
    inputs = {"audio": network_input(batch["prev"], config=config, frontend=FRONTEND),
              "mel": sampler.conditioning(batch["segment"])}
    logits = model(inputs).numpy()[:, -sampler.window:]
    audio = corpus.audio(0)
    classes = mu_law_encode(audio, FRONTEND.mu).numpy()
    full_prev = np.concatenate([[silence_class(FRONTEND)], classes[:-1]])[None]
    full = model({"audio": full_prev, "mel": conditioning_mel(audio[None], frontend=FRONTEND,
                                                              context=config.cond_context)}).numpy()[0]
    checked = 0
    for row, k in enumerate(batch["start"]):
        if k >= history:  # the whole receptive field lies inside the utterance
            np.testing.assert_allclose(logits[row], full[k * HOP:k * HOP + sampler.window], atol=2e-3)
            checked += 1
    assert checked >= 3

    per_position = keras.losses.sparse_categorical_crossentropy(batch["target"], logits, from_logits=True)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    loss, accuracy = model.evaluate(inputs, batch["target"], verbose=0, batch_size=8)
    assert loss == pytest.approx(float(np.mean(per_position)), rel=1e-4)
    assert accuracy == pytest.approx(float(np.mean(np.argmax(logits, -1) == batch["target"])), abs=1e-6)

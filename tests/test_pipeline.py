import json
import os

import numpy as np
import soundfile as sf

from speechkit import frontend as fe
from speechkit.data import pipeline
from speechkit.data.manifest import Utterance
from speechkit.text import Vocabulary

MINI_TRAIN_DURATIONS = os.path.join(os.path.dirname(__file__), "data", "mini_train_durations.json")


def test_sortagrad_first_epoch_is_sorted_then_shuffled_buckets():
    durations = np.random.default_rng(0).uniform(1, 10, 103)
    first = pipeline.plan_batches(durations, batch_size=8, epoch=0)
    flat = [i for b in first for i in b]
    assert np.all(np.diff(durations[flat]) >= 0)
    second = pipeline.plan_batches(durations, batch_size=8, epoch=1, seed=3)
    assert sorted(i for b in second for i in b) == list(range(103))
    assert [len(b) for b in second] == [8] * 12 + [7]
    assert second != pipeline.plan_batches(durations, batch_size=8, epoch=2, seed=3)
    assert second == pipeline.plan_batches(durations, batch_size=8, epoch=1, seed=3)
    starts = [durations[b].min() for b in second[:-1]]
    assert not np.all(np.diff(starts) >= 0), "batch order of later epochs must be shuffled"
    assert pipeline.plan_batches(durations, batch_size=8, epoch=0, sortagrad=False) != first


def test_bucketing_padding_efficiency_on_mini_train_split():
    """Durations of the mini corpus train split (seed 0), as written by `speechkit data synth-mini`."""
    with open(MINI_TRAIN_DURATIONS) as f:
        durations = json.load(f)
    utts = [Utterance(str(i), "x", d, "A", "s") for i, d in enumerate(durations)]
    frames = pipeline.frame_counts(utts, fe.FrontendConfig())
    bucketed = np.mean([pipeline.padding_efficiency(frames, pipeline.plan_batches(durations, batch_size=16, epoch=e))
                        for e in range(1, 4)])
    naive = np.mean([pipeline.padding_efficiency(frames, pipeline.naive_batches(len(durations), batch_size=16, epoch=e))
                     for e in range(1, 4)])
    assert bucketed >= 0.90
    assert naive < 0.90


def test_asr_dataset_yields_padded_batches_in_plan_order(tmp_path):
    rng = np.random.default_rng(0)
    vocab = Vocabulary()
    cfg = fe.FrontendConfig()
    utts = []
    for i, (seconds, words) in enumerate([(0.5, "A"), (1.0, "BB C"), (0.7, "IT'S"), (0.3, "D")]):
        path = tmp_path / f"{i}.flac"
        sf.write(path, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
        utts.append(Utterance(str(i), str(path), seconds, words, "s"))
    batches = pipeline.plan_batches([u.duration for u in utts], batch_size=3, epoch=0)
    assert batches == [[3, 0, 2], [1]]
    out = list(pipeline.asr_dataset(utts, batches, vocabulary=vocab, frontend=cfg))
    assert len(out) == 2
    feats, feat_lens, labels, label_lens = out[0]
    assert feats.shape == (3, 1 + int(0.7 * 16000) // 160, 161)
    assert list(feat_lens.numpy()) == [1 + int(s * 16000) // 160 for s in (0.3, 0.5, 0.7)]
    assert list(label_lens.numpy()) == [1, 1, 4]
    assert vocab.decode(labels[2].numpy()[:4]) == "IT'S"
    alone = fe.features(np.asarray(sf.read(utts[2].audio, dtype="float32")[0])[None], [11200], config=cfg)[0]
    np.testing.assert_allclose(feats[2].numpy(), alone[0].numpy(), atol=1e-4)
    assert out[1][0].shape[0] == 1

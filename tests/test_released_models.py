"""The released models in ``models/`` work from a fresh process on freshly synthesised speech.

The voices are the mini test speakers' espeak-ng settings (never heard in training) and the sentences
are new, so an untrained model (character error rate near 1) or a broken release cannot pass.
"""

import os
import subprocess
import sys

import jiwer
import pytest

from speechkit.models import list_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (espeak-ng voice, words per minute, pitch) of mini test speakers 150, 154 and 155, and new sentences.
_UTTERANCES = [
    (("en-us+f3", 188, 25), "HE WALKED SLOWLY DOWN THE LONG ROAD TOWARDS THE VILLAGE"),
    (("en-gb+m5", 166, 46), "THE CHILDREN WERE PLAYING IN THE GARDEN ALL THE AFTERNOON"),
    (("en-gb-scotland+m4", 148, 49), "SHE OPENED THE LETTER AND READ IT TWICE BEFORE SHE SPOKE"),
]


@pytest.fixture(scope="module")
def test_speaker_audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("released")
    paths = []
    for i, ((voice, rate, pitch), text) in enumerate(_UTTERANCES):
        path = str(folder / f"u{i}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", path, text.lower()],
                       check=True, timeout=60)
        paths.append(path)
    return paths


def _transcribe(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("SPEECHKIT_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line]
    return [text for _, text in lines]


def test_ds2_mini_is_released_with_its_lm():
    cards = {card["name"]: card for card in list_models(os.path.join(REPO, "models"))}
    assert cards["ds2-mini"]["family"] == "asr" and "error" not in cards["ds2-mini"]
    assert os.path.isfile(os.path.join(REPO, "models", "ds2-mini", "lm", "lm.binary"))


def test_released_ds2_mini_recognises_unseen_test_voices(test_speaker_audio):
    refs = [text for _, text in _UTTERANCES]
    greedy = _transcribe(["--model", "ds2-mini", "--decoder", "greedy", *test_speaker_audio])
    assert len(greedy) == len(refs)
    assert jiwer.cer(refs, greedy) < 0.25, greedy
    default = _transcribe(test_speaker_audio)
    assert jiwer.wer(refs, default) < 0.35, default

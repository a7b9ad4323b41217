"""Text to speech: normalise and split the text, predict the log-mel, turn it into audio.

``Synthesizer`` holds a trained acoustic model and a mel inverter: ``"griffinlim"`` (librosa,
``speechkit.tts.griffinlim``; needs no trained vocoder) or ``"wavenet"`` (a trained WaveNet run or
released model through ``Vocoder.vocode_mels``, the numba generation loop). A text
longer than the model's ``max_characters`` is split (``speechkit.tts.text.split_text``); its pieces
are synthesised one by one and joined with ``PAUSE_SECONDS`` of silence.
"""

import json
import logging
import os
import time

import numpy as np

from speechkit import audio as audio_io
from speechkit.config import atomic_write_text
from speechkit.data.durations import tts_text
from speechkit.errors import ConfigError
from speechkit.runs import RunDir
from speechkit.text import Vocabulary
from speechkit.tts.config import TTSConfig
from speechkit.tts.griffinlim import griffinlim_numpy
from speechkit.tts.model import AcousticModel
from speechkit.tts.text import split_text
from speechkit.vocoder.generation import load_vocoder

__all__ = ["PAUSE_SECONDS", "VOCODERS", "Synthesizer", "load_acoustic_model", "load_synthesizer",
           "synthesize_to_dir", "synthesize_to_file"]

logger = logging.getLogger(__name__)

PAUSE_SECONDS = 0.2
VOCODERS = ("griffinlim", "wavenet")
LISTING = "synthesis.jsonl"


class Synthesizer:
    """Text to waveform with a trained acoustic model.

    Args:
        model: a built ``AcousticModel``.
        config: TTSConfig of the run.
        vocoder: ``"griffinlim"`` or ``"wavenet"``.
        wavenet: ``speechkit.vocoder.generation.Vocoder`` (``vocoder="wavenet"`` only), trained on the
            same front end.
        griffinlim_iterations: int > 0.
        run_dir: str or None, for messages.

    Raises:
        ConfigError: an unknown vocoder, a missing WaveNet, or a WaveNet of another front end.
    """

    def __init__(self, model, *, config, vocoder="griffinlim", wavenet=None, griffinlim_iterations=32, run_dir=None):
        if vocoder not in VOCODERS:
            raise ConfigError(f"vocoder must be one of {VOCODERS}, received: {vocoder!r}")
        if vocoder == "wavenet":
            if wavenet is None:
                raise ConfigError("the wavenet vocoder needs a trained WaveNet run or released model")
            if wavenet.model.upsampler is None:
                raise ConfigError(f"{wavenet.run_dir}: an unconditional WaveNet cannot turn a mel into audio")
            wavenet.frontend.check_matches(config.frontend, source=f"vocoder {wavenet.run_dir} for TTS run {run_dir}")
        self.model = model
        self.config = config
        self.frontend = config.frontend
        self.vocabulary = Vocabulary(config.model.characters)
        self.vocoder = vocoder
        self.wavenet = wavenet
        self.griffinlim_iterations = int(griffinlim_iterations)
        self.run_dir = run_dir

    @property
    def max_piece_characters(self):
        """int, the longest normalised piece: the model's ``max_characters`` less the two edge spaces."""
        return self.config.model.max_characters - 2

    def pieces(self, text, *, source=None):
        """The normalised pieces ``text`` is spoken as (``split_text``); raises TextError on bad text."""
        return split_text(text, max_characters=self.max_piece_characters, characters=self.config.model.characters,
                          source=source)

    def mel(self, piece, *, speed=1.0):
        """Predicted log-mel float32 [frames, n_mels] of one normalised piece (at most ``max_piece_characters``)."""
        tokens = np.asarray([self.vocabulary.encode(tts_text(piece))], np.int32)
        mel, lengths = self.model.infer(tokens, speed=speed)
        return mel[0, :int(lengths[0])].numpy()

    def vocode(self, mel, *, temperature=1.0, seed=0):
        """Waveform float32 [samples] in [-1, 1] from a log-mel [frames, n_mels]."""
        if self.vocoder == "griffinlim":
            return griffinlim_numpy(mel, config=self.frontend, iterations=self.griffinlim_iterations)
        return self._wavenet(mel, temperature=temperature, seed=seed)

    def _wavenet(self, mel, *, temperature, seed):
        """``frames * hop`` samples, conditioned as the exported vocoder's serving_default (edge frames repeated)."""
        return self.wavenet.vocode_mels([mel], temperature=temperature, seed=seed)[0]

    def synthesize(self, text, *, speed=1.0, temperature=1.0, seed=0, source=None):
        """Speak ``text``.

        Args:
            text: str, written text (normalised and split here).
            speed: float > 0, > 1 speaks faster.
            temperature, seed: WaveNet sampling (ignored by Griffin-Lim).
            source: optional str naming the text, for messages.

        Returns:
            dict: ``audio`` float32 [samples], ``pieces`` (list of str, the normalised text spoken),
            ``frames`` (int, mel frames), ``seconds``, ``synthesis_seconds`` (wall time, normalisation
            to waveform).

        Raises:
            TextError: empty text, or characters that cannot be spoken (named).
        """
        if speed <= 0:
            raise ConfigError(f"speed must be > 0, received: {speed}")
        started = time.perf_counter()
        pieces = self.pieces(text, source=source)
        pause = np.zeros(int(PAUSE_SECONDS * self.frontend.sample_rate), np.float32)
        parts, frames = [], 0
        for i, piece in enumerate(pieces):
            mel = self.mel(piece, speed=speed)
            frames += len(mel)
            if i:
                parts.append(pause)
            parts.append(self.vocode(mel, temperature=temperature, seed=seed + i))
        audio = np.concatenate(parts).astype(np.float32)
        return {"audio": audio, "pieces": pieces, "frames": frames,
                "seconds": len(audio) / self.frontend.sample_rate, "synthesis_seconds": time.perf_counter() - started}


def load_acoustic_model(run_dir):
    """(AcousticModel, TTSConfig) of a TTS run or released model, checked against ``config.yaml``.

    A run holds ``model.keras``; a released model (``speechkit models pack``) holds ``weights.npz``
    (float32 or float16), loaded into a model built from ``config.yaml``.

    Raises:
        RunError: missing or unreadable files, or not an acoustic model.
        ConfigError: the model's front end or model config differs from the run's config.
    """
    run = RunDir(run_dir)
    config = run.load_config(TTSConfig)
    if not run.exists(run.MODEL) and run.exists(run.WEIGHTS):
        model = AcousticModel(config.model, n_mels=config.frontend.n_mels, name="acoustic_model")
        model.build()
        return run.load_weights(model), config
    model = run.load_model(cls=AcousticModel)
    if model.config != config.model:
        raise ConfigError(f"{run.file(run.MODEL)}: the model's config differs from {run.file(run.CONFIG)}")
    return model, config


def load_synthesizer(run_dir, *, vocoder="griffinlim", vocoder_dir=None, griffinlim_iterations=32):
    """A ``Synthesizer`` for a TTS run and, with ``vocoder="wavenet"``, the WaveNet in ``vocoder_dir``."""
    model, config = load_acoustic_model(run_dir)
    wavenet = load_vocoder(vocoder_dir) if vocoder == "wavenet" else None
    return Synthesizer(model, config=config, vocoder=vocoder, wavenet=wavenet,
                       griffinlim_iterations=griffinlim_iterations, run_dir=os.fspath(run_dir))


def synthesize_to_dir(synthesizer, texts, out_dir, *, speed=1.0, temperature=1.0, seed=0):
    """Speak each text into ``out_dir/uttNNNN.wav`` and list them in ``out_dir/synthesis.jsonl``.

    Every text is checked (normalised and split) before any audio is made, so a bad line fails the
    whole call at once, naming its number.

    Args:
        synthesizer: Synthesizer.
        texts: list of str.
        out_dir: str, created if needed.
        speed, temperature, seed: see ``Synthesizer.synthesize`` (utterance ``i`` uses ``seed + i``).

    Returns:
        list of dict, the listing: ``id``, ``wav`` (file name), ``text``, ``normalized`` (pieces),
        ``frames``, ``seconds``, ``synthesis_seconds``, ``rtf``, ``vocoder``.

    Raises:
        TextError: naming the text (``text N``): empty, or with characters that cannot be spoken.
    """
    for i, text in enumerate(texts, 1):
        synthesizer.pieces(text, source=f"text {i}")
    os.makedirs(out_dir, exist_ok=True)
    listing = []
    for i, text in enumerate(texts, 1):
        result = synthesizer.synthesize(text, speed=speed, temperature=temperature, seed=seed + i,
                                        source=f"text {i}")
        name = f"utt{i:04d}.wav"
        audio_io.save(os.path.join(out_dir, name), result["audio"], sample_rate=synthesizer.frontend.sample_rate)
        listing.append({"id": f"utt{i:04d}", "wav": name, "text": text, "normalized": result["pieces"],
                        "frames": result["frames"], "seconds": round(result["seconds"], 3),
                        "synthesis_seconds": round(result["synthesis_seconds"], 3),
                        "rtf": round(result["synthesis_seconds"] / max(result["seconds"], 1e-9), 4),
                        "vocoder": synthesizer.vocoder})
        logger.info("%s: %.2f s in %.2f s (%s)", name, result["seconds"], result["synthesis_seconds"],
                    " | ".join(result["pieces"]))
    atomic_write_text(os.path.join(out_dir, LISTING), "".join(json.dumps(item) + "\n" for item in listing))
    return listing


def synthesize_to_file(synthesizer, text, path, *, speed=1.0, temperature=1.0, seed=0):
    """Speak one text into the audio file ``path`` (its extension picks the format: wav, flac, ogg).

    Returns:
        dict: ``pieces``, ``frames``, ``seconds``, ``synthesis_seconds`` (``Synthesizer.synthesize``
        without the audio).

    Raises:
        TextError: the text is empty or holds characters that cannot be spoken; AudioError: an
            extension soundfile cannot write.
    """
    result = synthesizer.synthesize(text, speed=speed, temperature=temperature, seed=seed)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    audio_io.save(path, result["audio"], sample_rate=synthesizer.frontend.sample_rate)
    logger.info("%s: %.2f s in %.2f s (%s)", path, result["seconds"], result["synthesis_seconds"],
                " | ".join(result["pieces"]))
    return {key: value for key, value in result.items() if key != "audio"}

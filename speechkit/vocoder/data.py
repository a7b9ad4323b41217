"""Vocoder training data: audio held in memory, random windows with their aligned mel frames.

Each training example is a window of ``frames * hop`` samples starting on a frame boundary, its
mu-law targets, the teacher-forcing input (the same samples shifted by one, with the real sample
before the window when there is one, and optionally ``history`` frames of the real audio before
the window, so that every target sees its whole receptive field), and the conditioning frames that
``speechkit.vocoder.wavenet.conditioning_mel`` gives for that span of the whole utterance (``context``
more on each side). The
frames are computed in the pipeline by the shared front end, from an audio segment wide enough that
no frame sees the segment's edge, so a window's mel equals the full utterance's mel bit for bit
(``tests/test_wavenet_train.py``).

For a model with ``lpc_order`` > 0 the input and target samples are the residual of the linear
predictor that ``speechkit.vocoder.lpc`` takes from the same mel frames, which equals the residual
of the whole utterance sample for sample.

Batch ``s`` is a pure function of ``(seed, s)``, so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

import dataclasses
import glob
import logging
import math
import os

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.data.manifest import SkipReport, read_manifest
from speechkit.errors import AudioError, SpeechkitError
from speechkit.frontend import log_mel, mu_law_encode
from speechkit.vocoder.lpc import excitation_span, source_filter
from speechkit.vocoder.pulses import PULSE_FEATURES, aligned_pulses, implied_pitch, sample_frames
from speechkit.vocoder.wavenet import network_input, silence_class

__all__ = ["AudioCorpus", "load_corpus", "corpus_from_manifest", "corpus_from_dir", "history_frames", "onset_weights",
           "WindowSampler", "window_dataset"]

logger = logging.getLogger(__name__)

_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclasses.dataclass
class AudioCorpus:
    """Training audio in memory as 16-bit PCM (lossless for 16-bit sources, half the memory of float32).

    Attributes:
        ids: list of str, one per utterance.
        audios: list of int16 [samples].
        speakers: int32 [utterances], index into ``speaker_names``.
        speaker_names: list of str, sorted.
        skipped: SkipReport, what was left out and why.
    """

    ids: list
    audios: list
    speakers: np.ndarray
    speaker_names: list
    skipped: SkipReport

    @property
    def total_samples(self):
        return int(sum(len(a) for a in self.audios))

    def audio(self, index):
        """Utterance ``index`` as float32 [samples] in [-1, 1]."""
        return self.audios[index].astype(np.float32) / 32768.0


def load_corpus(items, *, sample_rate, min_samples, source):
    """Load ``(id, path, speaker)`` items; unreadable or too short files are skipped and counted.

    Raises:
        SpeechkitError: nothing usable remains (the message gives the skip counts).
    """
    report = SkipReport()
    ids, audios, names = [], [], []
    for utt_id, path, speaker in tqdm(items, desc=f"load {os.path.basename(source)}", unit="file"):
        try:
            audio = audio_io.load(path, sample_rate=sample_rate)
        except AudioError as err:
            report.add("unreadable", path, err)
            continue
        if len(audio) < min_samples:
            report.add("too_short", path, f"{len(audio)} samples < {min_samples}")
            continue
        ids.append(utt_id)
        audios.append(np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16))
        names.append(speaker)
    if not audios:
        raise SpeechkitError(f"{source}: no usable audio ({report.summary()})")
    speaker_names = sorted(set(names))
    index = {name: i for i, name in enumerate(speaker_names)}
    speakers = np.array([index[n] for n in names], np.int32)
    logger.info("%s: %d utterances, %.2f h, %d speakers; %s", source, len(audios),
                sum(len(a) for a in audios) / sample_rate / 3600, len(speaker_names), report.summary())
    return AudioCorpus(ids, audios, speakers, speaker_names, report)


def corpus_from_manifest(path, *, sample_rate, min_samples):
    """Corpus from a JSONL manifest; bad manifest lines are skipped and counted too."""
    report = SkipReport()
    utterances = read_manifest(path, skip_report=report)
    corpus = load_corpus([(u.id, u.audio, u.speaker) for u in utterances], sample_rate=sample_rate,
                         min_samples=min_samples, source=path)
    for reason, items in report.items.items():
        corpus.skipped.items[reason].extend(items)
    return corpus


def corpus_from_dir(root, *, sample_rate, min_samples):
    """Corpus from every wav, flac and ogg file under ``root``; the speaker is the first sub-folder name."""
    if not os.path.isdir(root):
        raise SpeechkitError(f"{root}: audio folder does not exist")
    paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if p.lower().endswith(_AUDIO_EXTENSIONS) and os.path.isfile(p))
    if not paths:
        raise SpeechkitError(f"{root}: no {'/'.join(_AUDIO_EXTENSIONS)} files found")
    items = []
    for p in paths:
        rel = os.path.relpath(p, root)
        parts = rel.split(os.sep)
        items.append((os.path.splitext(rel)[0], p, parts[0] if len(parts) > 1 else "."))
    return load_corpus(items, sample_rate=sample_rate, min_samples=min_samples, source=root)


def history_frames(receptive_field, hop):
    """Frames of real audio to feed before a window so that its first sample sees its whole receptive field.

    Args:
        receptive_field: int, ``WaveNet.receptive_field().samples`` (it counts the sample just before).
        hop: int, samples per frame.

    Returns:
        int, ``ceil((receptive_field - 1) / hop)``.

    Example:
        >>> history_frames(2047, 160)
        13
    """
    return math.ceil((receptive_field - 1) / hop)


class WindowSampler:
    """Random frame-aligned windows, deterministic in ``(seed, step)``.

    Utterances are drawn in proportion to their number of possible windows, so every second of
    audio is about equally likely to be seen.

    With ``history`` frames, the network input starts that many frames before the window and the
    targets cover the window only: every target position sees the real audio of its receptive field,
    as in generation, where a sample is predicted from the samples generated before it. Without it,
    the first receptive field of each window is predicted from zeros, which generation never does
    (about 40% of a 5,120-sample window for a 2,047-sample receptive field). Audio before an
    utterance's start is silence, as at the start of generation.

    Args:
        corpus: AudioCorpus.
        frontend: FrontendConfig (``kind="mel"``).
        window_frames: int > 0, window length in frames (``window_frames * hop`` samples): the
            positions with a target.
        context: int >= 0, extra conditioning frames each side.
        batch_size: int > 0.
        seed: int.
        history: int >= 0, frames of input before the window (``history_frames`` gives the number a
            model needs).
        lpc_order: int >= 0; > 0 makes the samples the residual of that order's predictor from the
            mel (needs ``context`` >= 1: a sample's predictor may come from the frame after it).
        lpc_normalize: bool, the residual divided by the level the predictor implies (``lpc.source_filter``).
        start_share: float in [0, 1], the share of windows that begin at their utterance's first sample,
            with silence before it, as generation from silence begins. Music needs it: a
            chord-conditioned model must learn to strike the chord its label asks for, and an even draw
            gives that onset to about one window in 250 of a 2.8 s clip, where everything after it can
            be predicted from the context alone.
        pulses: bool (needs ``lpc_order``), each batch also carries the pulse train of training on its
            residual (``speechkit.vocoder.pulses.aligned_pulses``).
    """

    def __init__(self, corpus, *, frontend, window_frames, context, batch_size, seed, history=0, lpc_order=0,
                 lpc_normalize=False, start_share=0.0, pulses=False):
        if int(history) != history or history < 0:
            raise ValueError(f"history must be an int >= 0, received: {history!r}")
        if not 0.0 <= start_share <= 1.0:
            raise ValueError(f"start_share must lie in [0, 1], received: {start_share!r}")
        self.start_share = float(start_share)
        if lpc_order and context < 1:
            raise ValueError(f"lpc_order {lpc_order} needs context >= 1, received: {context}")
        self.lpc_order = int(lpc_order)
        if pulses and not lpc_order:
            raise ValueError("pulses need lpc_order > 0: they sit on the LPC residual's peaks")
        self.pulses = bool(pulses)
        self.lpc_normalize = bool(lpc_normalize)
        self.corpus = corpus
        self.frontend = frontend
        self.hop = frontend.hop_length
        self.window_frames = window_frames
        self.window = window_frames * self.hop
        self.history = int(history)
        self.input_frames = self.history + window_frames
        self.context = context
        self.batch_size = batch_size
        self.seed = seed
        self.edge = math.ceil((frontend.mel_frame_length // 2) / self.hop)
        self.segment = (self.input_frames + 2 * context + 2 * self.edge) * self.hop
        starts = np.array([(len(a) - self.window) // self.hop + 1 for a in corpus.audios], np.float64)
        if np.any(starts < 1):
            raise SpeechkitError(f"utterances shorter than the {self.window}-sample window are in the corpus")
        self.num_starts = starts.astype(np.int64)
        self.weights = starts / starts.sum()

    def batch(self, step):
        """Batch ``step`` as numpy arrays.

        Returns:
            dict: ``segment`` float32 [B, segment] (audio for the mel, zero outside the utterance),
            ``prev`` int32 [B, (history + window_frames) * hop] (input classes: sample ``t - 1`` at
            position ``t``), ``target`` int32 [B, window] (the classes of the window, aligned with the
            end of ``prev``), ``speaker`` int32 [B], ``utterance`` int32 [B], ``start`` int32 [B]
            (first frame of the window), and with ``pulses`` also ``pulses`` float32 [B, (history +
            window_frames) * hop, PULSE_FEATURES], aligned with ``prev``.
        """
        rng = np.random.default_rng([self.seed, int(step)])
        utts = rng.choice(len(self.corpus.audios), size=self.batch_size, p=self.weights)
        at_start = np.zeros(self.batch_size, bool)
        if self.start_share:
            at_start = rng.random(self.batch_size) < self.start_share
        inputs = self.input_frames * self.hop
        segment = np.zeros((self.batch_size, self.segment), np.float32)
        window = np.zeros((self.batch_size, inputs + 1), np.float32)
        starts = np.zeros(self.batch_size, np.int32)
        has_prev = np.zeros(self.batch_size, bool)
        rows = []
        for row, u in enumerate(utts):
            audio = self.corpus.audio(u)
            k = 0 if at_start[row] else int(rng.integers(self.num_starts[u]))
            starts[row] = k
            first = k - self.history
            s0 = (first - self.context - self.edge) * self.hop
            lo, hi = max(s0, 0), min(s0 + self.segment, len(audio))
            segment[row, lo - s0:hi - s0] = audio[lo:hi]
            w0 = first * self.hop - 1
            has_prev[row] = w0 >= 0
            window[row, max(-w0, 0):] = audio[max(w0, 0):w0 + inputs + 1]
            rows.append((audio, first - self.context - self.edge, w0))
        extra = {}
        if self.lpc_order:
            mel = log_mel(segment, config=self.frontend)
            predictors, gains = source_filter(mel, frontend=self.frontend, order=self.lpc_order,
                                              normalize=self.lpc_normalize)
            for row, (audio, frame0, w0) in enumerate(rows):
                window[row] = excitation_span(audio, predictors[row], hop=self.hop, first_frame=frame0,
                                              start=w0, stop=w0 + inputs + 1,
                                              gain=None if gains is None else gains[row])
            if self.pulses:
                extra["pulses"] = self._aligned_pulses(mel, window[:, 1:])
        classes = mu_law_encode(window, self.frontend.mu).numpy()
        classes[~has_prev, 0] = silence_class(self.frontend)
        return {"segment": segment, "prev": classes[:, :-1], "target": classes[:, 1 + inputs - self.window:],
                "speaker": self.corpus.speakers[utts].astype(np.int32), "utterance": utts.astype(np.int32),
                "start": starts, **extra}

    def _aligned_pulses(self, mel, residual):
        """float32 [B, samples, PULSE_FEATURES] on each row's residual, with the conditioning mel's pitch."""
        conditioning = mel[:, self.edge:self.edge + self.input_frames + 2 * self.context]
        period, voicing = implied_pitch(conditioning, frontend=self.frontend)
        index = sample_frames(residual.shape[1], hop=self.hop, context=self.context,
                              frames=conditioning.shape[1]).numpy()
        period, voicing = period.numpy()[:, index], voicing.numpy()[:, index]
        return np.stack([aligned_pulses(r, p, v) for r, p, v in zip(residual, period, voicing)])

    def conditioning(self, segment):
        """Mel frames of a segment batch: float32 [B, history + window_frames + 2 * context, n_mels]."""
        mel = log_mel(segment, config=self.frontend)
        return mel[:, self.edge:self.edge + self.input_frames + 2 * self.context]


def onset_weights(starts, *, window, onset_weight, onset_samples):
    """float32 [B, window] loss weights: ``onset_weight`` on the first ``onset_samples`` positions of the
    rows whose window starts at frame 0 (the utterance's onset, after silence), 1 elsewhere."""
    weights = np.ones((len(starts), window), np.float32)
    weights[np.asarray(starts) == 0, :onset_samples] = onset_weight
    return weights


def window_dataset(sampler, *, model_config, start_step=0, onset_weight=1.0, onset_samples=0):
    """Infinite ``tf.data.Dataset`` of ``(inputs, targets)`` batches starting at batch ``start_step``.

    ``inputs`` holds ``"audio"`` (teacher-forcing input, int32 or float32 [B, (history + window_frames)
    * hop]), and ``"mel"`` and ``"speaker"`` when the model uses them; ``targets`` is int32 [B, window],
    aligned with the end of the input (``WaveNet`` scores its last ``window`` outputs). With
    ``onset_weight`` > 1 and ``onset_samples`` > 0, each element also carries the per-position weights of
    ``onset_weights``.
    """
    batch, window, segment = sampler.batch_size, sampler.window, sampler.segment
    inputs = sampler.input_frames * sampler.hop

    if model_config.pulse_input and not sampler.pulses:
        raise ValueError("a pulse_input model needs a WindowSampler with pulses=True")
    pulse_shape = [batch, inputs, PULSE_FEATURES] if model_config.pulse_input else [batch, 0, PULSE_FEATURES]

    def generate():
        step = start_step
        while True:
            b = sampler.batch(step)
            pulses = b["pulses"] if model_config.pulse_input else np.zeros(pulse_shape, np.float32)
            weights = onset_weights(b["start"], window=window, onset_weight=onset_weight, onset_samples=onset_samples)
            yield b["segment"], b["prev"], b["target"], b["speaker"], pulses, weights
            step += 1

    spec = (tf.TensorSpec([batch, segment], tf.float32), tf.TensorSpec([batch, inputs], tf.int32),
            tf.TensorSpec([batch, window], tf.int32), tf.TensorSpec([batch], tf.int32),
            tf.TensorSpec(pulse_shape, tf.float32), tf.TensorSpec([batch, window], tf.float32))
    weighted = onset_weight > 1.0 and onset_samples > 0

    def to_model(segment, prev, target, speaker, pulses, weights):
        inputs = {"audio": network_input(prev, config=model_config, frontend=sampler.frontend)}
        if model_config.conditioning == "mel":
            inputs["mel"] = sampler.conditioning(segment)
        if model_config.num_speakers:
            inputs["speaker"] = speaker
        if model_config.pulse_input:
            inputs["pulses"] = pulses
        return (inputs, target, weights) if weighted else (inputs, target)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
    return dataset.map(to_model, num_parallel_calls=1).prefetch(2)

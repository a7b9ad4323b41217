"""TTS training data: characters, their durations and the target log-mel of each utterance, and the batch plan.

The corpus is read once into memory (one hour of speech is about 360k frames x 80 bands, 115 MB
in float32). Batches are a pure function of ``(seed, epoch)``: the epoch's shuffle is cut into
groups of similar length (little padding), and every epoch has the same number of full batches,
so a run resumed anywhere sees the batches an uninterrupted run would have seen.
"""

import dataclasses
import logging

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.data.durations import read_durations
from speechkit.data.manifest import SkipReport, read_manifest
from speechkit.errors import AudioError, SpeechkitError, TextError
from speechkit.frontend import log_mel
from speechkit.text import Vocabulary

__all__ = ["TTSCorpus", "load_tts_corpus", "plan_epoch", "pad_batch", "tts_dataset"]

logger = logging.getLogger(__name__)

_GROUP_BATCHES = 8


@dataclasses.dataclass
class TTSCorpus:
    """Training utterances in memory.

    Attributes:
        ids: list of str.
        tokens: list of int32 [characters] arrays (the model's input, edge spaces included).
        durations: list of int32 [characters] arrays, frames per character.
        mels: list of float32 [frames, n_mels] arrays, the front end's raw log-mel.
        seconds: float64 [utterances], audio durations.
        skipped: SkipReport, what was left out and why.
    """

    ids: list
    tokens: list
    durations: list
    mels: list
    seconds: np.ndarray
    skipped: SkipReport

    def __len__(self):
        return len(self.ids)


def load_tts_corpus(manifest, durations_path, *, frontend, characters, max_seconds=None, max_characters=None,
                    progress=False):
    """Join a manifest with its durations file and compute every target log-mel.

    Utterances of the manifest without durations (dropped by ``compute_durations``), durations whose
    frames disagree with the audio under ``frontend`` (another hop or sample rate), characters
    outside ``characters``, and utterances over ``max_seconds`` or ``max_characters`` are skipped and
    counted by reason.

    Args:
        manifest: str, JSONL manifest.
        durations_path: str, written by ``speechkit.data.durations.compute_durations``.
        frontend: FrontendConfig of the model (``kind: mel``, unnormalised).
        characters: str, the model's input symbols (index 1 onwards).
        max_seconds: optional float; max_characters: optional int.
        progress: bool.

    Returns:
        TTSCorpus.

    Raises:
        SpeechkitError: nothing usable is left, naming both files.
    """
    skipped = SkipReport()
    utterances = {u.id: u for u in read_manifest(manifest, skip_report=skipped)}
    by_id = {item["id"]: item for item in read_durations(durations_path)}
    vocabulary = Vocabulary(characters)
    corpus = TTSCorpus([], [], [], [], np.zeros(0), skipped)
    seconds = []
    for utt_id, utt in tqdm(utterances.items(), desc="mel", unit="utt", disable=not progress):
        item = by_id.get(utt_id)
        if item is None:
            skipped.add("no_durations", utt_id, f"not in {durations_path}")
            continue
        if max_characters is not None and len(item["input"]) > max_characters:
            skipped.add("too_many_characters", utt_id, f"{len(item['input'])} > {max_characters}")
            continue
        try:
            tokens = np.asarray(vocabulary.encode(item["input"]), np.int32)
            audio = audio_io.load(utt.audio, sample_rate=frontend.sample_rate)
        except TextError as err:
            skipped.add("text", utt_id, err)
            continue
        except AudioError as err:
            skipped.add("audio", utt_id, err)
            continue
        duration = len(audio) / frontend.sample_rate
        if max_seconds is not None and duration > max_seconds:
            skipped.add("too_long", utt_id, f"{duration:.2f} s > {max_seconds} s")
            continue
        mel = log_mel(audio, config=frontend).numpy()
        if len(mel) != int(item["frames"]):
            skipped.add("frames_mismatch", utt_id, f"{len(mel)} mel frames, the durations sum to {item['frames']} "
                        "(made with another front end?)")
            continue
        corpus.ids.append(utt_id)
        corpus.tokens.append(tokens)
        corpus.durations.append(np.asarray(item["durations"], np.int32))
        corpus.mels.append(mel.astype(np.float32))
        seconds.append(duration)
    corpus.seconds = np.asarray(seconds, np.float64)
    if not corpus.ids:
        raise SpeechkitError(f"{manifest} with {durations_path}: no usable utterances ({skipped.summary()})")
    logger.info("TTS corpus: %d utterances, %.2f h; %s", len(corpus), corpus.seconds.sum() / 3600, skipped.summary())
    return corpus


def plan_epoch(frames, *, batch_size, seed, epoch):
    """The batches of one epoch: a pure function of ``(seed, epoch)``.

    The epoch's permutation (its last ``len % batch_size`` utterances wait for another epoch) is cut
    into groups of ``8 * batch_size``, each sorted by length and cut into batches, and the batches
    are shuffled.

    Args:
        frames: sequence of int, mel frames per utterance.
        batch_size: int > 0; seed: int; epoch: int >= 0.

    Returns:
        list of list of int, ``len(frames) // batch_size`` batches.

    Raises:
        SpeechkitError: fewer utterances than one batch.
    """
    frames = np.asarray(frames)
    count = len(frames) // batch_size
    if count == 0:
        raise SpeechkitError(f"{len(frames)} training utterances are fewer than one batch of {batch_size}")
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(len(frames))[:count * batch_size]
    group = _GROUP_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(frames[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(corpus, indices):
    """((tokens int32 [b, chars], durations int32 [b, chars]), (mel float32 [b, frames, n_mels], lengths int32 [b])).

    Padded tokens are 0 with duration 0; padded mel frames are 0 (masked by ``lengths`` in the loss).
    """
    chars = max(len(corpus.tokens[i]) for i in indices)
    frames = max(len(corpus.mels[i]) for i in indices)
    n_mels = corpus.mels[indices[0]].shape[1]
    tokens = np.zeros((len(indices), chars), np.int32)
    durations = np.zeros((len(indices), chars), np.int32)
    mel = np.zeros((len(indices), frames, n_mels), np.float32)
    lengths = np.zeros(len(indices), np.int32)
    for row, i in enumerate(indices):
        n = len(corpus.tokens[i])
        tokens[row, :n] = corpus.tokens[i]
        durations[row, :n] = corpus.durations[i]
        mel[row, :len(corpus.mels[i])] = corpus.mels[i]
        lengths[row] = len(corpus.mels[i])
    return (tokens, durations), (mel, lengths)


def tts_dataset(corpus, plan, epoch=0, batch=0):
    """``tf.data.Dataset`` of padded batches (``pad_batch``) from position ``(epoch, batch)`` of ``plan`` to the end.

    Args:
        corpus: TTSCorpus; plan: ``speechkit.training.EpochPlan`` over its indices; epoch, batch: int.
    """
    n_mels = corpus.mels[0].shape[1]

    def generate():
        for _, _, indices in plan.positions(epoch, batch):
            yield pad_batch(corpus, indices)

    signature = ((tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32)),
                 (tf.TensorSpec([None, None, n_mels], tf.float32), tf.TensorSpec([None], tf.int32)))
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)

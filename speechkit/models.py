"""Released models: the ``models/<name>/`` folders, finding them by name, listing them, and packing them.

A released model is a run directory that ``speechkit.runs.RunDir`` reads like any other, made small
enough for git and readable on a fresh clone (ESPnet's model zoo, NeMo's and SpeechBrain's
checkpoints, the DeepSpeech releases):

- ``config.yaml``: the training config, with its ``frontend`` and ``model`` sections; the network
  is rebuilt from it;
- ``weights.npz``: the weights alone, in float32 or float16 (``RunDir.save_weights``), each file
  under ``MAX_FILE_BYTES``; loading casts them back into the float32 model;
- ``vocabulary.json`` (ASR) or ``speakers.json`` (vocoder);
- ``decode.yaml`` (ASR, when the run was tuned) and ``lm/``: the tuned LM is shipped inside the
  folder, built pruned in KenLM's trie format so that it stays a few MB, and ``decode.yaml`` points
  at it relatively, so a fresh clone decodes with it as is;
- ``train_summary.json``, ``train_log.csv`` (the learning curve) and ``command.txt``: how it was
  trained;
- ``card.json``: the machine-readable card (family, storage, sizes, training time, measured
  figures, the load-back verification) that ``list_models`` reads; ``README.md``: the model card.

Where the folders are: ``models_root()``, the ``models/`` folder next to the package source (the
repository's, in an editable install), or the folder named by the ``SPEECHKIT_MODELS`` environment
variable.

Example:
    >>> [card["name"] for card in list_models()]  # doctest: +SKIP
    ['ds2-mini', 'wavenet-mini']
"""

import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess

import numpy as np

import speechkit
from speechkit.asr.beam import DecodeConfig
from speechkit.asr.decoding import greedy_decode
from speechkit.asr.deepspeech2 import DeepSpeech2
from speechkit.asr.inference import load_run
from speechkit.asr.lm import LM_BINARY, LM_INFO, LM_UNIGRAMS
from speechkit.data.durations import tts_text
from speechkit.data.manifest import even_spread
from speechkit.errors import ConfigError, KenLMError, RunError, SpeechkitError
from speechkit.frontend import log_mel, mu_law_encode
from speechkit.runs import WEIGHT_DTYPES, RunDir
from speechkit.text import Vocabulary
from speechkit.tts.model import AcousticModel, predicted_durations
from speechkit.tts.synthesis import load_acoustic_model
from speechkit.tts.text import split_text
from speechkit.vocoder.generation import load_vocoder
from speechkit.vocoder.lpc import excitation, source_filter
from speechkit.vocoder.wavenet import WaveNet, conditioning_mel, network_input, silence_class

__all__ = [
    "MODELS_ENV",
    "MAX_FILE_BYTES",
    "FAMILIES",
    "DEFAULT_MODELS",
    "PROBE_TEXTS",
    "models_root",
    "list_models",
    "resolve_model",
    "default_model",
    "model_decode_config",
    "pack_model",
    "eval_figures",
    "probe_audio",
    "card_summary",
    "verification_summary",
]

logger = logging.getLogger(__name__)

MODELS_ENV = "SPEECHKIT_MODELS"
MAX_FILE_BYTES = 25_000_000
FAMILIES = ("asr", "vocoder", "tts")
DEFAULT_MODELS = {"asr": "ds2-mini", "vocoder": "wavenet-mini", "tts": "tts-mini"}
LM_DIR = "lm"
_COPIED = (RunDir.CONFIG, RunDir.VOCABULARY, RunDir.SPEAKERS, RunDir.SUMMARY, RunDir.TRAIN_LOG, RunDir.COMMAND)
_VOCODER_MIN_AGREEMENT = 0.99
# TTS packing: predicted durations may move a frame where float16 moves a rounding boundary; the mel,
# decoded with the original's durations, must stay within this mean absolute log-mel difference.
_TTS_MIN_DURATION_AGREEMENT = 0.97
_TTS_MAX_MEAN_MEL_DIFF = 0.05
PROBE_TEXTS = ("the quick brown fox jumps over the lazy dog.",
               "she sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
               "how much wood would a woodchuck chuck if a woodchuck could chuck wood?")


# -- Where released models live -- #

def models_root():
    """str, the folder holding released models: ``$SPEECHKIT_MODELS``, else ``models/`` beside the package.

    With an editable install (``make install``) that is the repository's ``models/``.
    """
    override = os.environ.get(MODELS_ENV)
    if override:
        return os.path.abspath(override)
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(speechkit.__file__))), "models")


def _read_card(path):
    card = RunDir(path).read_json(RunDir.CARD)
    if not isinstance(card, dict) or card.get("family") not in FAMILIES:
        raise RunError(f"{os.path.join(path, RunDir.CARD)}: not a model card (needs a 'family' in {FAMILIES})")
    return card


def list_models(root=None):
    """The released models under ``root``: every sub-folder with a ``card.json``, by name.

    Args:
        root: str or None for ``models_root()``.

    Returns:
        list of dict, each a ``card.json`` with ``path`` (str) added; a folder whose card cannot be
        read is listed with ``error`` (str) instead of failing the whole listing.
    """
    root = models_root() if root is None else root
    if not os.path.isdir(root):
        return []
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or not os.path.isfile(os.path.join(entry.path, RunDir.CARD)):
            continue
        try:
            card = _read_card(entry.path)
        except RunError as err:
            card = {"name": entry.name, "error": str(err)}
        out.append({**card, "name": card.get("name", entry.name), "path": entry.path})
    return out


def resolve_model(name_or_path, *, family=None, root=None):
    """The directory of a released model given by name (``"ds2-mini"``) or by path.

    An existing directory is taken as it is (a released model or a training run); otherwise the name
    is looked up in ``root``.

    Args:
        name_or_path: str.
        family: ``"asr"``, ``"vocoder"``, ``"tts"`` or None; a released model of another family is refused.
        root: str or None for ``models_root()``.

    Returns:
        str, the directory.

    Raises:
        RunError: no such directory and no released model of that name (the message lists the
            released ones and where they were looked for), or the model is of another family.
    """
    root = models_root() if root is None else root
    path = name_or_path if os.path.isdir(name_or_path) else os.path.join(root, name_or_path)
    if not os.path.isdir(path) or (path != name_or_path and not os.path.isfile(os.path.join(path, RunDir.CARD))):
        names = [m["name"] for m in list_models(root) if family is None or m.get("family") == family]
        raise RunError(f"{name_or_path}: neither a directory nor a released model in {root} "
                       f"(released: {', '.join(names) or 'none'}; {MODELS_ENV} chooses another folder)")
    if family is not None and os.path.isfile(os.path.join(path, RunDir.CARD)):
        found = _read_card(path)["family"]
        if found != family:
            raise RunError(f"{path}: a released {found} model, not an {family} model")
    return path


def default_model(family, root=None):
    """The released model used when none is named: ``DEFAULT_MODELS[family]``, else the only one.

    Raises:
        RunError: no released model of ``family`` (or several, none of them the default) in ``root``.
    """
    if family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES}, received: {family!r}")
    root = models_root() if root is None else root
    models = [m for m in list_models(root) if m.get("family") == family and "error" not in m]
    for m in models:
        if m["name"] == DEFAULT_MODELS[family]:
            return m["path"]
    if len(models) == 1:
        return models[0]["path"]
    if not models:
        raise RunError(f"{root}: no released {family} model; name a trained run or a released model "
                       f"({MODELS_ENV} chooses another models folder)")
    raise RunError(f"{root}: several released {family} models ({', '.join(m['name'] for m in models)}) and none "
                   f"is {DEFAULT_MODELS[family]!r}; name one")


def model_decode_config(path):
    """The ``DecodeConfig`` of a run or released model (``decode.yaml``), its LM checked to exist.

    Raises:
        KenLMError: ``decode.yaml`` names an LM whose files are missing; the message names the
            missing file and, for a released model, the command its card records to rebuild it.
        ConfigError: ``decode.yaml`` is invalid.
    """
    config = RunDir(path).decode_config()
    if config.lm is None:
        return config
    missing = [os.path.join(config.lm, f) for f in (LM_BINARY, LM_UNIGRAMS, LM_INFO)
               if not os.path.isfile(os.path.join(config.lm, f))]
    if missing:
        card_path = os.path.join(path, RunDir.CARD)
        command = None
        if os.path.isfile(card_path):
            lm = _read_card(path).get("lm")
            command = _lm_command(lm, config.lm) if lm else None
        hint = (f"; it ships with the model (restore it from git) or rebuild it with: {command}" if command
                else "; build it with 'speechkit lm build' or decode without an LM")
        raise KenLMError(f"{missing[0]}: missing, but {os.path.join(path, RunDir.DECODE)} decodes with it{hint}")
    return config


# -- Probe input and verification -- #

def probe_audio(*, count=3, seconds=1.5, sample_rate=16000, seed=0):
    """Deterministic speech-like probe signals: harmonic tones with vibrato, in noise.

    Used to compare a packed model with its run when no real utterances are given.

    Returns:
        list of float32 [samples] arrays in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    out = []
    for i in range(count):
        f0 = 110.0 + 40.0 * i + 15.0 * np.sin(2 * np.pi * (3 + i) * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
        wave = 0.2 * wave / np.max(np.abs(wave)) + 0.01 * rng.standard_normal(t.size)
        out.append(np.clip(wave, -1, 1).astype(np.float32))
    return out


def _verify_asr(original, packed, audios):
    a, b = original.log_probs(audios), packed.log_probs(audios)
    diff = max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(a, b))
    texts_a = [greedy_decode(x, original.vocabulary) for x in a]
    texts_b = [greedy_decode(y, packed.vocabulary) for y in b]
    mismatches = [i for i, (x, y) in enumerate(zip(texts_a, texts_b)) if x != y]
    return {"utterances": len(audios), "max_abs_diff_log_probs": diff, "greedy_transcripts_identical":
            len(audios) - len(mismatches), "mismatches": [{"original": texts_a[i], "packed": texts_b[i]}
                                                          for i in mismatches],
            "passed": not mismatches}


def _teacher_forced_logits(model, audio):
    """Logits over ``audio``'s samples given the real past: the waveform, or an ``lpc_order`` model's residual."""
    signal = audio
    if model.config.lpc_order:
        predictors, gain = source_filter(log_mel(audio, config=model.frontend), frontend=model.frontend,
                                         order=model.config.lpc_order, normalize=model.config.lpc_normalize)
        signal = excitation(audio, predictors, hop=model.frontend.hop_length, gain=gain)
    classes = mu_law_encode(signal, model.frontend.mu).numpy().astype(np.int32)
    previous = np.concatenate([[silence_class(model.frontend)], classes[:-1]]).astype(np.int32)[None]
    inputs = {"audio": network_input(previous, config=model.config, frontend=model.frontend)}
    if model.upsampler is not None:
        inputs["mel"] = conditioning_mel(audio[None], frontend=model.frontend, context=model.config.cond_context)
    if model.speaker_embedding is not None:
        inputs["speaker"] = np.zeros((1,), np.int32)
    return np.asarray(model(inputs))[0]


def _verify_vocoder(original, packed, audios, *, seconds=0.25):
    diffs, agree, total = [], 0, 0
    for audio in audios:
        clip = audio[:int(seconds * original.frontend.sample_rate)]
        a, b = _teacher_forced_logits(original.model, clip), _teacher_forced_logits(packed.model, clip)
        diffs.append(float(np.max(np.abs(a - b))))
        agree += int(np.sum(np.argmax(a, -1) == np.argmax(b, -1)))
        total += a.shape[0]
    agreement = agree / total
    return {"utterances": len(audios), "samples": total, "max_abs_diff_logits": max(diffs),
            "argmax_agreement": agreement, "passed": agreement >= _VOCODER_MIN_AGREEMENT}


def _tts_tokens(config, text):
    vocabulary = Vocabulary(config.model.characters)
    pieces = split_text(text, max_characters=config.model.max_characters - 2, characters=config.model.characters)
    return np.asarray([vocabulary.encode(tts_text(pieces[0]))], np.int32)


def _verify_tts(original, packed, texts):
    """Compare the packed acoustic model with the run on ``texts``: durations, and mels decoded with one set."""
    (model_a, config), (model_b, _) = original, packed
    agree, total, diffs = 0, 0, []
    for text in texts:
        tokens = _tts_tokens(config, text)
        durations = []
        for model in (model_a, model_b):
            _, log_durations, mask = model.encode(tokens, training=False)
            durations.append(predicted_durations(log_durations, mask, max_frames=config.model.max_frames_per_character))
        agree += int(np.sum(durations[0].numpy() == durations[1].numpy()))
        total += tokens.shape[1]
        forced = np.maximum(durations[0].numpy(), (tokens > 0).astype(np.int32))
        mel_a = model_a((tokens, forced), training=False)[0].numpy()
        mel_b = model_b((tokens, forced), training=False)[0].numpy()
        diffs.append(float(np.mean(np.abs(mel_a - mel_b))) * config.model.mel_std)
    agreement = agree / max(total, 1)
    return {"utterances": len(texts), "characters": total, "duration_agreement": agreement,
            "max_mean_abs_diff_log_mel": max(diffs),
            "passed": agreement >= _TTS_MIN_DURATION_AGREEMENT and max(diffs) <= _TTS_MAX_MEAN_MEL_DIFF}


# -- Packing -- #

def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _revision():
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=os.path.dirname(os.path.abspath(speechkit.__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _lm_command(info, lm_dir):
    """The ``speechkit lm build`` command line that rebuilds an LM described by its ``lm.json``."""
    parts = ["speechkit lm build", f"--text {info.get('source') or 'LM_TEXT'}", f"--out {lm_dir}",
             f"--order {info.get('order', 4)}"]
    if info.get("prune"):
        parts.append("--prune " + " ".join(str(p) for p in info["prune"]))
    parts.append(f"--binary-type {info.get('binary_type', 'probing')}")
    if info.get("discount_fallback"):
        parts.append("--discount-fallback always")
    return " ".join(parts)


def _copy_lm(config, out, final):
    """Copy the LM of ``config`` into ``out/lm``; returns the card's ``lm`` section (``final``: the
    released folder, for the rebuild command)."""
    target = os.path.join(out, LM_DIR)
    os.makedirs(target)
    for name in (LM_BINARY, LM_UNIGRAMS, LM_INFO):
        source = os.path.join(config.lm, name)
        if not os.path.isfile(source):
            raise KenLMError(f"{source}: missing; the decode.yaml being released decodes with {config.lm}")
        size = os.path.getsize(source)
        if size > MAX_FILE_BYTES:
            raise RunError(f"{source}: {size / 1e6:.1f} MB, above the {MAX_FILE_BYTES / 1e6:.0f} MB a released file "
                           "may have; build the LM pruned and in the trie format (about 3.5 MB for the mini "
                           "corpus's 4-gram), tune the run with it, then release")
        shutil.copy2(source, os.path.join(target, name))
    with open(os.path.join(target, LM_INFO), encoding="utf-8") as f:
        info = json.load(f)
    keys = ("order", "prune", "binary_type", "source", "source_sha256", "vocabulary_size", "ngrams", "perplexity")
    section = {k: info.get(k) for k in keys}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(final)))
    if section["source"] and os.path.abspath(section["source"]).startswith(repo + os.sep):
        section["source"] = os.path.relpath(section["source"], repo)
    shown = os.path.join(os.path.basename(os.path.dirname(os.path.abspath(final))), os.path.basename(final), LM_DIR)
    return {**section, "path": LM_DIR, "command": _lm_command(section, shown)}


def _training_section(summary):
    wall = summary.get("train_seconds")
    cpu = summary.get("train_cpu_seconds")
    return {"steps": summary.get("step"), "epochs": summary.get("epochs_done"),
            "wall_hours": None if wall is None else wall / 3600, "cpu_hours": None if cpu is None else cpu / 3600,
            "audio_hours_seen": (summary.get("audio_seconds_trained") or 0) / 3600 or None,
            "best_dev_wer": summary.get("best_dev_wer"), "stopped": summary.get("stopped")}


def eval_figures(name, report_path):
    """The card figures of one ``speechkit eval`` report: ``{name}_wer``, ``_cer``, ``_rtf`` and ``_utterances``.

    Args:
        name: str, the figures' prefix, e.g. ``"test_greedy"``.
        report_path: str, an evaluation's ``report.json``.

    Raises:
        SpeechkitError: the report is missing or lacks a figure (the message names the file).
    """
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        return {f"{name}_{key}": report[key] for key in ("wer", "cer", "rtf", "utterances")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise SpeechkitError(f"{report_path}: not a 'speechkit eval' report ({err})") from None


def pack_model(run_dir, *, name, root=None, float16=False, force=False, probes=None, figures=None, data=None,
               description=None, notes=None):
    """Write a released model folder ``root/name`` from a finished training run, and verify it.

    The folder is assembled under a temporary name beside its destination, loaded back through
    ``load_run`` / ``load_vocoder`` / ``load_acoustic_model`` (the path a user takes), compared with
    the run on ``probes``, and renamed into place only when the comparison passes: the greedy
    transcripts must be identical (ASR), the teacher-forced argmax must agree on at least 99% of
    samples (vocoder), or the predicted durations must agree on 97% of characters and the mels,
    decoded with one set of durations, within 0.05 log-mel units on average (TTS).

    Args:
        run_dir: str, a finished ASR, vocoder or TTS run (``model.keras``, ``config.yaml``, ``DONE``).
        name: str, the model's name and folder name (letters, digits, ``.``, ``-``, ``_``).
        root: str or None for ``models_root()``.
        float16: bool, store the weights in float16 (half the size).
        force: bool, replace an existing ``root/name``.
        probes: list of float32 [samples] arrays at the model's rate, or None for ``probe_audio()``;
            for a TTS model, list of str (sentences), or None for ``PROBE_TEXTS``.
        figures: dict of str -> number or str, measured figures recorded in the card (for example
            ``{"test_wer_greedy": 0.18}``).
        data: str, what the model was trained on (for the card).
        description: str, one line for the listing.
        notes: str, Markdown appended to ``README.md`` (the learning curve's reading, limits, ...).

    Returns:
        dict, the ``card.json`` written, with ``path`` added.

    Raises:
        RunError: the run is unfinished or not a speechkit model, the destination exists without
            ``force``, a released file would exceed ``MAX_FILE_BYTES``, or the packed model does
            not reproduce the run; KenLMError: the tuned LM is missing.
    """
    if not name or name.startswith(".") or any(not (c.isalnum() or c in ".-_") for c in name):
        raise ConfigError(f"model name must be letters, digits, '.', '-' or '_', received: {name!r}")
    run = RunDir(run_dir)
    if not run.is_done():
        raise RunError(f"{run.file(RunDir.DONE)}: missing; {run.path} is not a finished run (train it to the end "
                       "or within its time budget first)")
    model = run.load_model()
    if isinstance(model, DeepSpeech2):
        family = "asr"
    elif isinstance(model, WaveNet):
        family = "vocoder"
    elif isinstance(model, AcousticModel):
        family = "tts"
    else:
        raise RunError(f"{run.file(RunDir.MODEL)}: not a DeepSpeech2, a WaveNet or a TTS AcousticModel "
                       f"({type(model).__name__})")
    root = models_root() if root is None else root
    out = os.path.join(root, name)
    if os.path.exists(out) and not force:
        raise RunError(f"{out}: already exists; replacing a released model must be asked for explicitly (force)")
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".{name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        card = _assemble(run, model, family, tmp, out, name=name, float16=float16, probes=probes, figures=figures,
                         data=data, description=description, notes=notes)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: released %s model (%s weights, %.2f MB)", out, family, card["storage"],
                card["files"][RunDir.WEIGHTS]["bytes"] / 1e6)
    return {**card, "path": out}


def _assemble(run, model, family, tmp, final, *, name, float16, probes, figures, data, description, notes):
    release = RunDir(tmp, create=True)
    for file_name in _COPIED:
        if run.exists(file_name):
            shutil.copy2(run.file(file_name), release.file(file_name))
    for required in (RunDir.CONFIG, RunDir.SUMMARY) + ((RunDir.VOCABULARY,) if family == "asr" else ()):
        if not release.exists(required):
            raise RunError(f"{run.file(required)}: missing; a release needs it")
    lm = None
    if family == "asr" and run.exists(RunDir.DECODE):
        decode = run.decode_config()
        if decode.lm is not None:
            lm = _copy_lm(decode, tmp, final)
            decode = DecodeConfig.from_dict({**decode.to_dict(), "lm": os.path.join(tmp, LM_DIR)})
        release.save_decode_config(decode)
    dtype = WEIGHT_DTYPES[1] if float16 else WEIGHT_DTYPES[0]
    saved = release.save_weights(model, dtype=dtype)
    if saved["kept_float32"]:
        logger.warning("%s: kept %d array(s) in float32, float16 cannot hold them: %s", saved["path"],
                       len(saved["kept_float32"]), ", ".join(saved["kept_float32"]))
    given = probes is not None
    if family == "tts":
        original, packed = load_acoustic_model(run.path), load_acoustic_model(tmp)
        probes = probes if given else list(PROBE_TEXTS)
        verification = _verify_tts(original, packed, probes)
    else:
        original, packed = (load_run(run), load_run(release)) if family == "asr" else (load_vocoder(run),
                                                                                       load_vocoder(release))
        probes = probes if given else probe_audio(sample_rate=original.frontend.sample_rate)
        verification = (_verify_asr if family == "asr" else _verify_vocoder)(original, packed, probes)
    verification["probe"] = ("the caller's utterances" if given else
                             "fixed sentences (PROBE_TEXTS)" if family == "tts" else "synthetic signals (probe_audio)")
    if not verification["passed"]:
        raise RunError(f"{saved['path']}: the {dtype} weights do not reproduce {run.file(RunDir.MODEL)} on the probe "
                       f"({json.dumps({k: v for k, v in verification.items() if k != 'passed'})})")
    files = {}
    for entry in sorted(os.scandir(tmp), key=lambda e: e.name):
        paths = ([entry.path] if entry.is_file()
                 else [os.path.join(entry.path, f) for f in sorted(os.listdir(entry.path))])
        for path in paths:
            size = os.path.getsize(path)
            if size > MAX_FILE_BYTES:
                raise RunError(f"{path}: {size / 1e6:.1f} MB, above the {MAX_FILE_BYTES / 1e6:.0f} MB a released "
                               "file may have" + ("" if float16 else "; float16 storage halves the weights"))
            files[os.path.relpath(path, tmp)] = {"bytes": size, "sha256": _sha256(path)}
    card = {
        "name": name,
        "family": family,
        "description": description or "",
        "architecture": type(model).__name__,
        "parameters": int(model.count_params()),
        "storage": dtype,
        "data": data or "",
        "revision": _revision(),
        "packed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_run": os.path.abspath(run.path),
        "command": [line for line in (release.read_text(RunDir.COMMAND).splitlines()
                                      if release.exists(RunDir.COMMAND) else []) if line.strip()],
        "training": _training_section(release.summary()),
        "figures": dict(figures or {}),
        "verification": verification,
        "lm": lm,
        "files": files,
    }
    release.write_json(RunDir.CARD, card)
    release.write_text(RunDir.README, _model_card(card, release, notes))
    return card


# -- The model card -- #

def _fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _curve(release, max_rows=20):
    if not release.exists(RunDir.TRAIN_LOG):
        return "No `train_log.csv` in the run.\n"
    lines = [line.split(",") for line in release.read_text(RunDir.TRAIN_LOG).splitlines() if line.strip()]
    if len(lines) < 2:
        return "`train_log.csv` holds no epochs.\n"
    header, rows = lines[0], lines[1:]
    # Keras' CSVLogger adds a val_ column per metric, all "NA" when the run has no validation data.
    shown = [i for i in range(len(header)) if any(i < len(row) and row[i] != "NA" for row in rows)]
    header, rows = [header[i] for i in shown], [[row[i] if i < len(row) else "" for i in shown] for row in rows]
    rows = even_spread(rows, max_rows)

    def cell(text):
        try:
            return _fmt(float(text))
        except ValueError:
            return text

    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "From `train_log.csv` (one row per epoch" + (", sampled" if len(lines) - 1 > max_rows else "") + "):\n\n" \
        + "\n".join(table) + "\n"


def _model_card(card, release, notes):
    name, t = card["name"], card["training"]
    weights = card["files"][RunDir.WEIGHTS]["bytes"]
    what = {"asr": "speech recognition (Deep Speech 2, CTC)", "vocoder": "WaveNet vocoder",
            "tts": "text to speech (FastSpeech-style text-to-mel model)"}[card["family"]]
    lines = [f"# Model card: {name}", "", card["description"] or f"A released {what}.", "",
             "| | |", "|---|---|",
             f"| Family | {what} |",
             f"| Parameters | {card['parameters']:,} |",
             f"| Weights | `weights.npz`, {card['storage']}, {weights / 1e6:.2f} MB |",
             f"| Data | {card['data'] or 'not stated'} |",
             f"| Steps / epochs | {_fmt(t['steps'])} / {_fmt(t['epochs'])} (stopped by {_fmt(t['stopped'])}) |",
             f"| Training time | {_fmt(t['wall_hours'])} h wall, {_fmt(t['cpu_hours'])} h CPU |",
             *([f"| Best dev WER (training) | {_fmt(t['best_dev_wer'])} |"] if card["family"] == "asr" else []),
             f"| Packed | {card['packed']} at revision {card['revision'] or 'unknown'} |", "",
             "## Training command", ""]
    lines += [f"    {c}" for c in card["command"]] or ["Not recorded."]
    lines += ["", "## Measured figures", ""]
    if card["figures"]:
        lines += ["| figure | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in card["figures"].items()]
    else:
        lines.append("None recorded yet.")
    lines += ["", "## Learning curve", "", _curve(release).rstrip(), "", "## Use", ""]
    if card["family"] == "asr":
        lines += [f"    speechkit transcribe --model {name} a.wav", f"    speechkit transcribe --model {name} "
                  "--decoder greedy a.wav", f"    speechkit eval --model {name} --manifest test.jsonl --out report/",
                  f"    speechkit export asr --model {name} --out export/asr"]
    elif card["family"] == "tts":
        lines += [f"    speechkit synthesize --model {name} \"Text to speak.\" --out speech/",
                  f"    speechkit synthesize --model {name} --text-file lines.txt --vocoder griffinlim --out speech/",
                  f"    speechkit eval-tts --model {name} --manifest test.jsonl --out report/",
                  f"    speechkit export tts --model {name} --out export/tts"]
    else:
        lines += [f"    speechkit vocode --model {name} a.wav --out vocoded.wav",
                  f"    speechkit eval-vocoder --model {name} --manifest test.jsonl --out report/",
                  f"    speechkit export vocoder --model {name} --out export/vocoder"]
    if card["lm"]:
        lm = card["lm"]
        lines += ["", "## Language model", "",
                  f"`lm/`: KenLM {lm['order']}-gram, {lm['binary_type']} binary, pruned {lm['prune'] or 'no'}; "
                  f"perplexity {_fmt(lm['perplexity'])}, vocabulary {_fmt(lm['vocabulary_size'])}. "
                  "`decode.yaml` points at it, so beam search uses it on a fresh clone. Rebuild it with:", "",
                  f"    {lm['command']}"]
    v = card["verification"]
    lines += ["", "## Verification", "",
              f"Loaded back from this folder and compared with the training run on {v['utterances']} probe "
              f"utterance(s) ({v['probe']}): {verification_summary(v)}."]
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"


def verification_summary(verification):
    """str, one line on how a packed model matched its run: the largest difference and the family's check."""
    v = verification
    if "duration_agreement" in v:
        return (f"mean abs log-mel difference at most {_fmt(v['max_mean_abs_diff_log_mel'])}, durations agree on "
                f"{v['duration_agreement']:.4f} of characters")
    diff = v.get("max_abs_diff_log_probs", v.get("max_abs_diff_logits"))
    check = (f"greedy transcripts identical on {v['greedy_transcripts_identical']}/{v['utterances']}"
             if "greedy_transcripts_identical" in v else f"argmax agreement {v['argmax_agreement']:.4f}")
    return f"max abs difference {_fmt(diff)}, {check}"


def card_summary(card):
    """dict of the listing's columns for one ``list_models`` entry."""
    t = card.get("training") or {}
    size = sum(f.get("bytes", 0) for f in (card.get("files") or {}).values())
    return {"name": card["name"], "family": card.get("family", "?"), "parameters": card.get("parameters"),
            "storage": card.get("storage"), "size_mb": size / 1e6, "steps": t.get("steps"),
            "wall_hours": t.get("wall_hours"), "figures": card.get("figures") or {}, "error": card.get("error")}


"""``speechkit benchmark``: several systems over several test sets, one table with intervals, significance and RTF.

A benchmark YAML names test sets (JSONL manifests) and systems. A system is one of:

- ``run: DIR``: a training run (``speechkit.asr.inference.load_run``);
- ``saved_model: DIR``: an exported SavedModel (``speechkit.export.asr.load_exported_asr``);
- ``released: NAME``: a released model, ``MODELS_DIR/NAME`` holding a run or an export;
- ``hypotheses: {TEST_SET: FILE}``: another toolkit's output files, scored as they are.

Each model system has a decoder setting: ``decode`` holds ``speechkit.asr.beam.DecodeConfig`` fields; when it
is left out a run decodes as its ``decode.yaml`` says (``load_decode_config``) and an export greedily.

Hypotheses are cached in ``OUT/hyps/SYSTEM/TEST_SET.jsonl`` with a ``.meta.json`` holding a key (the system
settings, the resolved decoder, the model files' sizes and times, and the manifest's content) and the
recognition timing. A rerun with the same key only scores, and still reports the recorded RTF.
"""

import dataclasses
import hashlib
import json
import logging
import os
import time

from tqdm import tqdm

from speechkit import audio as audio_io
from speechkit.asr.beam import DecodeConfig, build_decoder, load_decode_config
from speechkit.asr.inference import load_run
from speechkit.config import Config, atomic_write_text, from_dict
from speechkit.data.manifest import SkipReport, read_manifest
from speechkit.errors import AudioError, ConfigError, RunError
from speechkit.export.asr import load_exported_asr
from speechkit.scoring.formats import Transcript, TranscriptSet, read_transcripts
from speechkit.scoring.report import render_benchmark, write_report
from speechkit.scoring.score import ScoreConfig, score_sets

__all__ = ["SystemSpec", "TestSetSpec", "BenchmarkConfig", "run_benchmark"]

logger = logging.getLogger(__name__)

_KINDS = ("run", "saved_model", "released", "hypotheses")


@dataclasses.dataclass(frozen=True)
class SystemSpec(Config):
    """One system of a benchmark: exactly one of ``run``, ``saved_model``, ``released``, ``hypotheses``.

    Args:
        name: str, unique, shown in the tables.
        run: str, a training run directory.
        saved_model: str, an ASR export directory.
        released: str, a released model's name, looked up in ``BenchmarkConfig.models_dir``.
        hypotheses: dict test-set name -> transcript file (any format ``speechkit score`` reads).
        decode: dict of ``DecodeConfig`` fields (for example ``{decoder: beam, lm: exp/mini/lm, alpha: 0.75}``),
            or None: the run's ``decode.yaml``, else greedy.
        batch_size: int >= 1, utterances per forward pass.
    """

    name: str = ""
    run: str | None = None
    saved_model: str | None = None
    released: str | None = None
    hypotheses: dict | None = None
    decode: dict | None = None
    batch_size: int = 16

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"every system needs a name without '/', received: {self.name!r}")
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"system {self.name!r} needs exactly one of {list(_KINDS)}, received: {given}")
        if self.decode is not None:
            if self.hypotheses is not None:
                raise ConfigError(f"system {self.name!r}: 'decode' applies to models, not to hypothesis files")
            from_dict(DecodeConfig, self.decode, source=f"system {self.name!r} decode")

    @property
    def kind(self):
        return next(k for k in _KINDS if getattr(self, k) is not None)


@dataclasses.dataclass(frozen=True)
class TestSetSpec(Config):
    """A test set: ``name`` (str, unique) and ``manifest`` (a JSONL manifest with audio and reference text)."""

    __test__ = False
    name: str = ""
    manifest: str = ""

    def __post_init__(self):
        if not self.name or "/" in self.name or not self.manifest:
            raise ConfigError(f"every test set needs a name (without '/') and a manifest, received: "
                              f"name={self.name!r}, manifest={self.manifest!r}")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig(Config):
    """A benchmark: systems x test sets.

    Args:
        systems: list of ``SystemSpec`` mappings.
        test_sets: list of ``TestSetSpec`` mappings.
        out: str, output folder (``benchmark.md``/``.json``/``.html``, ``hyps/``, one scoring report per test set).
        models_dir: str, where ``released`` models live.
        score: ScoreConfig; ``missing`` defaults to ``"empty"`` here, so an unreadable audio file is scored as
            an empty hypothesis and listed, instead of stopping the benchmark.
    """

    systems: tuple = ()
    test_sets: tuple = ()
    out: str = "exp/benchmark"
    models_dir: str = "models"
    score: ScoreConfig = dataclasses.field(default_factory=lambda: ScoreConfig(missing="empty"))

    def __post_init__(self):
        systems = tuple(s if isinstance(s, SystemSpec) else SystemSpec.from_dict(s, source="benchmark systems")
                        for s in self.systems)
        test_sets = tuple(t if isinstance(t, TestSetSpec) else TestSetSpec.from_dict(t, source="benchmark test_sets")
                          for t in self.test_sets)
        if not systems or not test_sets:
            raise ConfigError("a benchmark needs at least one system and one test set")
        for label, items in (("system", systems), ("test set", test_sets)):
            names = [i.name for i in items]
            if len(set(names)) != len(names):
                raise ConfigError(f"{label} names must be unique, received: {names}")
        for s in systems:
            if s.hypotheses is not None:
                unknown = sorted(set(s.hypotheses) - {t.name for t in test_sets})
                if unknown:
                    raise ConfigError(f"system {s.name!r}: hypotheses for unknown test set(s) {unknown}")
        object.__setattr__(self, "systems", systems)
        object.__setattr__(self, "test_sets", test_sets)

    @classmethod
    def from_dict(cls, data, *, source=None):
        """As ``Config.from_dict``; a ``score`` section without ``missing`` scores missing utterances as empty."""
        if isinstance(data, dict) and isinstance(data.get("score"), dict) and "missing" not in data["score"]:
            data = dict(data, score=dict(data["score"], missing="empty"))
        return super().from_dict(data, source=source)

    def to_dict(self):
        data = super().to_dict()
        data["systems"] = [s.to_dict() for s in self.systems]
        data["test_sets"] = [t.to_dict() for t in self.test_sets]
        return data


def _model_dir(spec, models_dir):
    if spec.kind == "released":
        path = os.path.join(models_dir, spec.released)
        if not os.path.isdir(path):
            raise RunError(f"{path}: released model {spec.released!r} is not there (no weights are committed for "
                           "it; train it with its model card's command, or point 'run' at a run directory)")
        return path
    return spec.run if spec.kind == "run" else spec.saved_model


def _is_export(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _fingerprint(path):
    entries = []
    for root, _, files in os.walk(path):
        if os.path.relpath(root, path).split(os.sep)[0] in ("backup", "tensorboard", "logs"):
            continue
        for name in sorted(files):
            full = os.path.join(root, name)
            st = os.stat(full)
            entries.append([os.path.relpath(full, path), st.st_size, st.st_mtime_ns])
    return sorted(entries)


def _file_digest(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _decode_config(spec, model_dir):
    if spec.decode is not None:
        return from_dict(DecodeConfig, spec.decode, source=f"system {spec.name!r} decode")
    return DecodeConfig() if _is_export(model_dir) else load_decode_config(model_dir)


def _load(model_dir, batch_size):
    if _is_export(model_dir):
        return load_exported_asr(model_dir, batch_size=batch_size)
    return load_run(model_dir, batch_size=batch_size)


def _transcribe(recognizer, paths, decoder, skips, batch_size):
    if hasattr(recognizer, "transcribe_files"):
        yield from recognizer.transcribe_files(paths, decoder=decoder, skip_report=skips)
        return
    rate = recognizer.frontend.sample_rate
    for start in range(0, len(paths), batch_size):
        group = []
        for path in paths[start:start + batch_size]:
            try:
                group.append((path, audio_io.load(path, sample_rate=rate)))
            except AudioError as err:
                skips.add("bad_audio", path, err)
        if group:
            yield from zip([p for p, _ in group], recognizer.transcribe([a for _, a in group], decoder=decoder))


def _recognise(spec, model_dir, utterances, decode):
    recognizer = _load(model_dir, spec.batch_size)
    decoder = None if decode.decoder == "greedy" else build_decoder(decode, recognizer.vocabulary)
    by_path = {}
    for utt in utterances:
        by_path.setdefault(os.path.normpath(utt.audio), []).append(utt)
    paths = list(by_path)
    skips = SkipReport()
    hyps = {}
    start = time.perf_counter()
    for path, text in tqdm(_transcribe(recognizer, paths, decoder, skips, spec.batch_size), total=len(paths),
                           desc=f"recognising ({spec.name})", unit="utt"):
        for utt in by_path[os.path.normpath(path)]:
            hyps[utt.id] = text
    wall = time.perf_counter() - start
    if skips.total:
        first = next(iter(skips.items.values()))[0]
        logger.warning("%s: audio that could not be recognised counts as missing: %s; first: %s (%s)", spec.name,
                       skips.summary(), first["item"], first["detail"])
    if decoder is not None and hasattr(decoder, "close"):
        decoder.close()
    seconds = sum(u.duration for u in utterances if u.id in hyps)
    return hyps, {"wall_seconds": wall, "audio_seconds": seconds, "rtf": wall / seconds if seconds else None,
                  "skipped": skips.to_dict()}


def _system_hypotheses(spec, test_set, utterances, manifest_digest, config, out_dir, rerun):
    if spec.kind == "hypotheses":
        path = spec.hypotheses.get(test_set.name)
        if path is None:
            return TranscriptSet(path=f"{spec.name}: no file for {test_set.name}", format="jsonl", items={}), \
                {"rtf": None, "cached": None}
        return read_transcripts(path, role="hyp"), {"rtf": None, "cached": None}
    model_dir = _model_dir(spec, config.models_dir)
    if not os.path.isdir(model_dir):
        raise RunError(f"{model_dir}: system {spec.name!r}: model directory does not exist")
    decode = _decode_config(spec, model_dir)
    key = hashlib.sha256(json.dumps({"system": spec.to_dict(), "decode": decode.to_dict() if hasattr(decode, "to_dict")
                                     else dataclasses.asdict(decode), "model": _fingerprint(model_dir),
                                     "manifest": manifest_digest}, sort_keys=True).encode()).hexdigest()
    cache_dir = os.path.join(out_dir, "hyps", spec.name)
    hyp_path = os.path.join(cache_dir, f"{test_set.name}.jsonl")
    meta_path = os.path.join(cache_dir, f"{test_set.name}.meta.json")
    meta = None
    if not rerun and os.path.isfile(meta_path) and os.path.isfile(hyp_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("key") != key:
            logger.info("%s on %s: settings, model or manifest changed; recognising again", spec.name, test_set.name)
            meta = None
    if meta is None:
        hyps, timing = _recognise(spec, model_dir, utterances, decode)
        os.makedirs(cache_dir, exist_ok=True)
        lines = [json.dumps({"id": u.id, "hyp": hyps[u.id]}, ensure_ascii=False) for u in utterances if u.id in hyps]
        atomic_write_text(hyp_path, "".join(line + "\n" for line in lines))
        meta = dict(timing, key=key, model_dir=model_dir, manifest=test_set.manifest)
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        cached = False
    else:
        logger.info("%s on %s: cached hypotheses (%s)", spec.name, test_set.name, hyp_path)
        cached = True
    return read_transcripts(hyp_path, format="jsonl", role="hyp"), {"rtf": meta.get("rtf"), "cached": cached,
                                                                     "skipped": meta.get("skipped")}


def run_benchmark(config, *, out_dir=None, rerun=False, config_path=None):
    """Recognise (or reuse cached hypotheses), score every system on every test set, and write the reports.

    Args:
        config: BenchmarkConfig.
        out_dir: str or None, overrides ``config.out``.
        rerun: bool, ignore the cache.
        config_path: optional str, recorded in the report.

    Returns:
        dict: ``results`` (per test set: the scoring report, plus ``rtf`` and ``cached`` per system),
        ``paths`` (benchmark.md/.json/.html) and ``summary`` (lines for a terminal).

    Raises:
        RunError: a model directory is missing; ManifestError, TextError: bad test-set or hypothesis files.
    """
    out_dir = out_dir or config.out
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for test_set in config.test_sets:
        utterances = read_manifest(test_set.manifest)
        digest = _file_digest(test_set.manifest)
        reference = TranscriptSet(path=test_set.manifest, format="jsonl", items={
            u.id: Transcript(id=u.id, text=u.text, speaker=u.speaker, audio=u.audio, line=i + 1)
            for i, u in enumerate(utterances)})
        systems, extras = [], {}
        for spec in config.systems:
            hyps, extra = _system_hypotheses(spec, test_set, utterances, digest, config, out_dir, rerun)
            systems.append((spec.name, hyps))
            extras[spec.name] = extra
        report = score_sets(reference, systems, config=config.score)
        for system in report["systems"]:
            system.update(extras[system["name"]])
        write_report(report, os.path.join(out_dir, test_set.name))
        results.append({"test_set": test_set.name, "manifest": test_set.manifest, "report": report})
    markdown, page = render_benchmark(results, config_path=config_path)
    paths = {"md": os.path.join(out_dir, "benchmark.md"), "html": os.path.join(out_dir, "benchmark.html"),
             "json": os.path.join(out_dir, "benchmark.json")}
    atomic_write_text(paths["md"], markdown)
    atomic_write_text(paths["html"], page)
    atomic_write_text(paths["json"], json.dumps({"config": config.to_dict(), "results": results}, indent=2,
                                                ensure_ascii=False) + "\n")
    summary = []
    for r in results:
        for s in r["report"]["systems"]:
            rtf = "" if s.get("rtf") is None else f", RTF {s['rtf']:.4f}" + (" (cached)" if s.get("cached") else "")
            summary.append(f"{r['test_set']} / {s['name']}: WER {s['wer'] * 100:.2f}% "
                           f"[{s['wer_interval'][0] * 100:.2f}, {s['wer_interval'][1] * 100:.2f}]{rtf}, "
                           f"missing {s['missing']['count']}")
    return {"results": results, "paths": paths, "summary": summary}

"""The experiment report reads the ASR and vocoder runs through RunDir; missing or broken parts are left out."""

import json
import os

from speechkit.asr.beam import DecodeConfig
from speechkit.frontend import FrontendConfig
from speechkit.report import collect, write_report
from speechkit.runs import RunDir
from speechkit.vocoder.wavenet import WaveNetConfig


def _exp(tmp_path):
    exp = tmp_path / "exp"
    asr = RunDir(exp / "asr", create=True)
    asr.save_config({"frontend": FrontendConfig().to_dict()})
    asr.mark_done({"step": 40, "epochs_done": 2.0, "training_utterances": 12, "stopped": "time_budget",
                   "throughput_audio_s_per_s": 55.5, "best_dev_wer": 0.5, "parameters": 1234})
    asr.save_decode_config(DecodeConfig(decoder="beam", alpha=1.25, beta=0.5, lm=str(exp / "lm")))
    asr.write_text(RunDir.TRAIN_LOG, "epoch,loss,step,val_wer\n0,10.0,20,0.9\n1,5.0,40,0.5\n")
    asr.write_text(RunDir.BATCHES, "".join(json.dumps({"step": i, "loss": 10.0 - i / 8, "nonfinite": False}) + "\n"
                                           for i in range(1, 41)))
    vocoder = RunDir(exp / "vocoder", create=True)
    model = WaveNetConfig(layers_per_stack=3, stacks=2)
    vocoder.save_config({"frontend": FrontendConfig(kind="mel", normalize=False).to_dict(), "model": model.to_dict()})
    vocoder.mark_done({"step": 300, "epochs_done": 3, "stopped": "epochs", "samples_per_second": 12345.6})
    vocoder.write_text(RunDir.TRAIN_LOG, "epoch,accuracy,loss\n0,0.1,4.0\n1,0.2,3.5\n2,0.3,3.0\n")
    return exp, model


def write_report_text(exp):
    write_report(str(exp))
    return (exp / "report.md").read_text()


def test_report_reads_both_runs(tmp_path):
    exp, model = _exp(tmp_path)
    data = write_report(str(exp))
    assert data["asr_training"]["step"] == 40
    assert data["decode"]["alpha"] == 1.25 and data["decode"]["lm"] == str(exp / "lm")
    assert data["vocoder_model"] == model.to_dict() and data["vocoder_frontend"]["kind"] == "mel"
    text = (exp / "report.md").read_text()
    assert "Training: 40 steps (2.0 epochs) on 12 utterances, stopped by time budget" in text
    assert "alpha = 1.25, beta = 0.5" in text
    assert "2 stacks x 3 layers" in text
    assert "Training: 300 steps (3.0 epochs), stopped by epochs; 12,346 samples per second." in text
    assert "![training curves](training_curves.png)" in text
    assert os.path.getsize(exp / "training_curves.png") > 1000
    assert "data:image/png;base64," in (exp / "report.html").read_text()
    assert json.loads((exp / "report.json").read_text())["vocoder_training"]["step"] == 300
    assert not [name for name in os.listdir(exp) if ".tmp." in name]


def test_missing_and_broken_parts_are_left_out(tmp_path, caplog):
    exp, _ = _exp(tmp_path)
    (exp / "asr" / RunDir.SUMMARY).write_text("{broken")
    RunDir(exp / "vocoder").mark_done({"step": 1, "throughput_audio_s_per_s": None})
    (exp / "vocoder" / RunDir.CONFIG).write_text("frontend: {kind: wavelet}\nmodel: {stacks: 2}\n")
    data = collect(str(exp))
    assert data["asr_training"] is None and data["decode"]["alpha"] == 1.25
    assert data["vocoder_model"] is not None and data["vocoder_frontend"] is None
    assert "train_summary.json: not valid JSON" in caplog.text and "config.yaml" in caplog.text
    assert "Training: 1 steps (nan epochs), stopped by None; nan samples per second." in write_report_text(exp)
    empty = tmp_path / "empty"
    empty.mkdir()
    data = write_report(str(empty))
    assert data["asr_training"] is None and data["vocoder_model"] is None and data["decode"] is None
    text = (empty / "report.md").read_text()
    assert "No ASR evaluation yet" in text and "training curves" not in text


def _eval_report(path, wer, run_dir):
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps({
        "wer": wer, "cer": wer / 3, "wer_ci95": [wer - 0.01, wer + 0.01], "utterances": 5, "rtf": 0.01,
        "decode_rtf": 0.02, "run_dir": str(run_dir)}))


def test_report_puts_the_released_model_next_to_the_run(tmp_path):
    exp, _ = _exp(tmp_path)
    release = RunDir(tmp_path / "models" / "ds2-mini", create=True)
    release.write_json(RunDir.CARD, {"name": "ds2-mini", "family": "asr", "data": "the release corpus",
                                     "training": {"steps": 6408, "wall_hours": 1.05}})
    for decoder, ours, theirs in (("greedy", 0.62, 0.365), ("beam_lm", 0.37, 0.166)):
        _eval_report(exp / "eval" / "test" / decoder, ours, exp / "asr")
        _eval_report(exp / "eval_released" / "test" / decoder, theirs, release.path)
    text = write_report_text(exp)
    assert "| greedy | 62.00% | 36.50% [35.5, 37.5] | 0.0200 | 0.0200 |" in text
    assert "| beam + LM | 37.00% | 16.60% [15.6, 17.6] |" in text
    assert "`ds2-mini` was trained for 6408 steps (1.1 wall hours) on the release corpus" in text

    no_release = tmp_path / "plain"
    exp.rename(no_release)
    for path in (no_release / "eval_released").rglob("report.json"):
        path.unlink()
    assert "released model" not in write_report_text(no_release)


def test_report_shows_the_tts_evaluation(tmp_path):
    exp, _ = _exp(tmp_path)
    tts = RunDir(exp / "tts", create=True)
    tts.mark_done({"step": 120, "epochs_done": 3.0, "stopped": "time_budget"})
    (exp / "tts_eval").mkdir()
    (exp / "tts_eval" / "report.json").write_text(json.dumps({
        "summary": {"utterances": 2, "vocoder": "griffinlim", "seconds_synthesized": 5.5, "rtf": 0.4,
                    "mcd_dtw_mel_db": 23.1, "asr_run": "/x/models/ds2-mini", "wer_recorded": 0.2,
                    "wer_synthesized": 0.31},
        "utterances": [{"id": "u1", "text": "HELLO THERE", "wav": "wav/u1.wav", "png": "png/u1.png",
                        "asr_synthesized": "HELLO THERE"},
                       {"id": "u2", "text": "GOOD DAY", "wav": "wav/u2.wav", "asr_synthesized": "GOOD DA"}]}))
    text = write_report_text(exp)
    assert "Training: 120 steps (3.0 epochs), stopped by time budget" in text
    assert "recordings 20.00%, synthesised 31.00%" in text and "(RTF 0.40)" in text
    assert "[synthesised](tts_eval/wav/u2.wav); ASR heard \"GOOD DA\"" in text
    assert "![u1](tts_eval/png/u1.png)" in text
    (tmp_path / "plain").mkdir()
    assert "No TTS evaluation yet" in write_report_text(tmp_path / "plain")


def test_report_names_the_released_tts_model_it_evaluated(tmp_path):
    exp, _ = _exp(tmp_path)
    released = tmp_path / "models" / "tts-mini"
    released.mkdir(parents=True)
    (released / "card.json").write_text(json.dumps({"name": "tts-mini", "family": "tts",
                                                    "training": {"steps": 4200, "wall_hours": 1.1}}))
    (exp / "tts_eval").mkdir()
    (exp / "tts_eval" / "report.json").write_text(json.dumps({
        "summary": {"utterances": 1, "tts_run": str(released), "vocoder": "griffinlim", "seconds_synthesized": 2.0,
                    "rtf": 0.3, "mcd_dtw_mel_db": 20.0},
        "utterances": [{"id": "u1", "text": "HI", "wav": "wav/u1.wav"}]}))
    text = write_report_text(exp)
    section = text[text.index("## Text to speech"):]
    assert section.startswith("## Text to speech (tts-mini)\n\n"
                              "The released model `tts-mini` (4200 steps, 1.10 h of training")

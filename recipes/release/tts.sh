#!/usr/bin/env bash
# The TTS release recipe: synthesise a one-voice corpus (1 h of train; espeak-ng en-us+m3), cut its character
# durations by CTC forced alignment with the released ds2-mini, train tts-mini (resuming), measure it on held-out
# sentences (the released ASR's WER on synthesised speech next to that on the recordings, MCD-DTW, RTF), and
# pack models/tts-mini.
#
# Usage: recipes/release/tts.sh [--stage N] [--stop-stage N] [--exp DIR] [--data DIR] [--seed N]
#   Stages: 1 corpus, 2 durations, 3 training (TTS_BUDGET minutes; resumes every time), 4 test evaluation,
#           5 pack into models/tts-mini. Stages 1-2 skip finished work.
#   FAST=1 recipes/release/tts.sh   runs a tiny smoke version (its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=5; seed=0
tts_config=models/tts-mini.yaml; release_name=tts-mini
if [ "${FAST:-0}" = 1 ]; then
  data=data/release-tts-fast; exp=exp/release-tts-fast
  synth_args=(--train-hours 0.03 --dev-minutes 0.2 --test-minutes 0.2); tts_budget=${TTS_BUDGET:-0.3}
else
  data=data/release-tts; exp=exp/release-tts
  synth_args=(--train-hours 1 --dev-minutes 3 --test-minutes 3); tts_budget=${TTS_BUDGET:-60}
fi
parse_recipe_options "$@"
pack_root=$([ "${FAST:-0}" = 1 ] && echo "$exp/models" || echo models)
mkdir -p "$exp"
echo "$0 $*" >>"$exp/command.txt"

if stage_enabled 1; then
  log "Stage 1: synthesise the one-voice corpus: ../shared/corpus/books -> $data"
  speechkit data synth-mini --out "$data" --single-speaker --seed "$seed" "${synth_args[@]}"
fi
if stage_enabled 2; then
  log "Stage 2: character durations by CTC forced alignment with ds2-mini: $data/train.jsonl -> $data/train.durations.jsonl"
  [ -s "$data/train.durations.jsonl" ] || speechkit data durations "$data/train.jsonl" --model ds2-mini \
    --config "$tts_config" --out "$data/train.durations.jsonl"
fi
if stage_enabled 3; then
  log "Stage 3: train $(basename "$tts_config" .yaml) for $tts_budget min, resuming: $data/train.jsonl -> $exp/tts"
  speechkit train tts --config "$tts_config" --train "$data/train.jsonl" --durations "$data/train.durations.jsonl" \
    --out "$exp/tts" --time-budget "$tts_budget" --quiet
fi
if stage_enabled 4; then
  log "Stage 4: speak the held-out sentences (Griffin-Lim), ASR WER vs the recordings: $data/test.jsonl -> $exp/tts_eval"
  rm -rf "$exp/tts_eval"
  speechkit eval-tts --run "$exp/tts" --manifest "$data/test.jsonl" --out "$exp/tts_eval" --asr ds2-mini \
    --vocoder griffinlim
fi
if stage_enabled 5; then
  log "Stage 5: pack the release (float16 weights, model card): $exp/tts -> $pack_root/$release_name"
  figures=$(python - "$exp/tts_eval/report.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(" ".join(f"--figure test_{k}={s[k]}" for k in ("wer_synthesized", "wer_recorded", "mcd_dtw_mel_db", "rtf",
                                                     "utterances") if k in s))
PY
)
  # shellcheck disable=SC2086
  SPEECHKIT_MODELS=$pack_root speechkit models pack "$exp/tts" --name "$release_name" --float16 --force \
    --probe "$data/test.jsonl" $figures \
    --data "one-voice corpus ($data): synth-mini --single-speaker (espeak-ng en-us+m3) ${synth_args[*]}; durations by ds2-mini; test = held-out sentences" \
    --description "FastSpeech-style text-to-mel model (characters, 80-bin log-mel), one espeak-ng voice" \
    --notes recipes/release/tts.md
fi
log "Done: $exp [elapsed=${SECONDS}s]"

#!/usr/bin/env bash
# The mini recipe: synthesise a small corpus, train Deep Speech 2 and a WaveNet vocoder on it, decode
# with a KenLM language model, export both models and write exp/mini/report.md (and report.html).
#
# Usage: recipes/mini/run.sh [--stage N] [--stop-stage N] [--exp DIR] [--data DIR] [--seed N]
#   Stages: 1 corpus, 2 manifests, 3 LM, 4 ASR training, 5 alpha/beta tuning, 6 ASR eval,
#           7 vocoder training, 8 vocoder eval + round trip, 9 export, 10 text to speech (single-speaker corpus,
#           the released tts-mini or forced-alignment durations and a short training, evaluation), 11 report.
#           Finished stages are skipped.
#   FAST=1 recipes/mini/run.sh   runs a tiny smoke version (about 5 min; its figures mean nothing).
#   The released models/ds2-mini is evaluated on the same test set and recognises the vocoder round trip
#   (RELEASE_ASR= turns that off). Stage 10 evaluates the released models/tts-mini on the single-speaker test
#   sentences; RELEASE_TTS= aligns and trains a TTS model for TTS_BUDGET minutes instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=11; seed=0
if [ "${FAST:-0}" = 1 ]; then
  data=data/mini-fast; exp=exp/mini-fast
  synth_args=(--train-hours 0.02 --dev-minutes 0.4 --test-minutes 0.4)
  asr_budget=1; asr_args=(--epochs 3); vocoder_budget=0.5; vocode_limit=1; lm_order=3
  tune_args=(--alphas 0.5 1.0 --betas 0.0 1.0 --beam-width 16)
  tts_synth_args=(--train-hours 0.02 --dev-minutes 0.2 --test-minutes 0.2); tts_budget=0.3; tts_eval_limit=3
else
  data=data/mini; exp=exp/mini
  synth_args=()
  asr_budget=${ASR_BUDGET:-12}; asr_args=(); vocoder_budget=${VOCODER_BUDGET:-3}; vocode_limit=3; lm_order=4
  tune_args=(--alphas 0.5 0.75 1.0 1.5 --betas 0.5 1.0 2.0 --beam-width 16)
  tts_synth_args=(--train-hours 0.5 --dev-minutes 1 --test-minutes 2); tts_budget=${TTS_BUDGET:-4}; tts_eval_limit=20
fi
lm_args=()
parse_recipe_options "$@"
mkdir -p "$exp"
echo "$0 $*" >"$exp/command.txt"

if stage_enabled 1; then
  log "Stage 1: synthesise the mini corpus: ../shared/corpus/books -> $data"
  speechkit data synth-mini --out "$data" --seed "$seed" "${synth_args[@]}"
fi
if stage_enabled 2; then
  log "Stage 2: write manifests: $data/{train,dev,test} -> $data/{train,dev,test}.jsonl"
  for split in train dev test; do
    [ -s "$data/$split.jsonl" ] || speechkit data import-librispeech "$data/$split" --out "$data/$split.jsonl"
  done
fi

train=$data/train.jsonl dev=$data/dev.jsonl test=$data/test.jsonl lm_text=$data/lm_text.txt
asr_config=models/ds2-mini.yaml vocoder_config=models/wavenet-mini.yaml vocoder_train=$train
tts_data=${data%/}-tts tts_config=models/tts-mini.yaml
release_asr=${RELEASE_ASR-models/ds2-mini}  # the released model, next to this run in the report (empty: skip)
[ -z "$release_asr" ] || [ -s "$release_asr/card.json" ] || release_asr=""
release_tts=${RELEASE_TTS-models/tts-mini}  # stage 10 evaluates it instead of training one (empty: train)
[ -z "$release_tts" ] || [ -s "$release_tts/card.json" ] || release_tts=""
run_model_stages
log "Done: $exp/report.md [elapsed=${SECONDS}s]"

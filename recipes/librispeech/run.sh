#!/usr/bin/env bash
# Deep Speech 2 + WaveNet on a local LibriSpeech copy (nothing is downloaded).
#
# Usage: recipes/librispeech/run.sh --data /path/to/LibriSpeech [--lm-text librispeech-lm-norm.txt]
#          [--stage N] [--stop-stage N] [--exp DIR] [--strategy default|mirrored|multi-worker]
#          [--asr-budget MIN] [--vocoder-budget MIN] [--vocoder-speakers 19,26,...] [--config PRESET]
#   --data holds train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other, test-clean and
#   test-other (missing training splits are skipped). The LM comes from --lm-text when given (the
#   LibriSpeech LM corpus), otherwise from the training transcripts.
#   Stages: 1 manifests, 2 LM text and vocoder subset, 3 LM, 4 ASR training, 5 alpha/beta tuning,
#           6 ASR eval, 7 vocoder training, 8 vocoder eval + round trip, 9 export, 11 report (10, text to
#           speech, is the mini recipe's: it needs a single-speaker corpus).
#   --strategy multi-worker: run stages 1-3 on one host, then `--stage 4 --stop-stage 4` on every host at once
#   (TF_CONFIG set, the same --exp on shared storage; the workers agree on when --asr-budget is spent), then
#   `--stage 5` on one host.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=11; exp=exp/librispeech; librispeech=""; lm_text_in=""; strategy=default
asr_config=models/ds2-librispeech.yaml; asr_budget=100000; vocoder_budget=600; vocoder_speakers=""
vocoder_config=models/wavenet-mel.yaml; vocode_limit=10; lm_order=4; tune_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) librispeech=$2; shift 2 ;;
    --lm-text) lm_text_in=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --strategy) strategy=$2; shift 2 ;;
    --config) asr_config=$2; shift 2 ;;
    --vocoder-config) vocoder_config=$2; shift 2 ;;
    --asr-budget) asr_budget=$2; shift 2 ;;
    --vocoder-budget) vocoder_budget=$2; shift 2 ;;
    --vocoder-speakers) vocoder_speakers=$2; shift 2 ;;
    --vocode-limit) vocode_limit=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    -h|--help) print_recipe_help; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
lm_args=(--prune 0); for ((i = 1; i < lm_order; i++)); do lm_args+=(1); done   # drop singleton n-grams above unigrams
[ -n "$librispeech" ] || { echo "--data /path/to/LibriSpeech is required" >&2; exit 2; }
[ -d "$librispeech" ] || { echo "--data $librispeech: not a directory" >&2; exit 2; }
data=$exp/data
mkdir -p "$data"
echo "$0 $*" >"$exp/command.txt"

train_splits=(); for split in train-clean-100 train-clean-360 train-other-500; do
  [ -d "$librispeech/$split" ] && train_splits+=("$split"); done
[ ${#train_splits[@]} -gt 0 ] || { echo "$librispeech: no train-* split found" >&2; exit 2; }
eval_splits=(); for split in dev-clean dev-other test-clean test-other; do
  [ -d "$librispeech/$split" ] && eval_splits+=("$split"); done

if stage_enabled 1; then
  for split in "${train_splits[@]}" "${eval_splits[@]}"; do
    log "Stage 1: manifest: $librispeech/$split -> $data/$split.jsonl"
    [ -s "$data/$split.jsonl" ] || speechkit data import-librispeech "$librispeech/$split" --out "$data/$split.jsonl"
  done
fi
if stage_enabled 2; then
  log "Stage 2: combine training manifests, LM text and the vocoder subset: -> $data/{train.jsonl,lm_text.txt,vocoder.jsonl}"
  train_manifests=(); for split in "${train_splits[@]}"; do train_manifests+=("$data/$split.jsonl"); done
  speechkit data combine "${train_manifests[@]}" --out "$data/train.jsonl"
  if [ -n "$lm_text_in" ]; then
    ln -sf "$(cd "$(dirname "$lm_text_in")" && pwd)/$(basename "$lm_text_in")" "$data/lm_text.txt"
  else
    speechkit data text "$data/train.jsonl" --out "$data/lm_text.txt"
  fi
  speechkit data combine "$data/train.jsonl" --out "$data/vocoder.jsonl" \
    ${vocoder_speakers:+--speakers "$vocoder_speakers"} --max-hours 10
fi

dev_name=dev-clean; [ -s "$data/dev-clean.jsonl" ] || dev_name=${eval_splits[0]}
train=$data/train.jsonl dev=$data/$dev_name.jsonl lm_text=$data/lm_text.txt vocoder_train=$data/vocoder.jsonl
test=""; for split in test-clean test-other dev-clean dev-other; do
  [ -d "$librispeech/$split" ] && test="$test $data/$split.jsonl"; done
test=${test# }
asr_args=(--strategy "$strategy")
run_model_stages
log "Done: $exp/report.md [elapsed=${SECONDS}s]"

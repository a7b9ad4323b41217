#!/usr/bin/env bash
# The vocoder release recipe: train wavenet-mini on the release corpus (11 h, 400 synthetic voices; see run.sh)
# in time-budgeted campaigns, each resuming the last, measure it on the mini test set (unseen speakers), and
# pack models/wavenet-mini once it keeps the words.
#
# Usage: recipes/release/vocoder.sh [--stage N] [--stop-stage N] [--exp DIR] [--data DIR] [--seed N]
#   Stages: 1 corpus and manifests (run.sh stages 1-2), 2 vocoder campaign (VOCODER_BUDGET minutes; resumes
#           every time), 3 test evaluation (LSD, MCD, and the released ASR's WER on vocoded vs original audio,
#           EVAL_LIMIT utterances), 4 save the resumable checkpoint into models/campaigns/wavenet-mini (commit it:
#           the next campaign, on another machine, starts from it when $exp/vocoder does not exist),
#           5 pack models/wavenet-mini (not run by default: `--stage 5 --stop-stage 5` once stage 3's figures
#           meet the release bar in models/wavenet-mini.md).
#   INIT_FROM=RUN starts a new stage-2 run from the weights of another vocoder run instead of the committed
#           campaign (when the preset gained an input that starts at zero; see vocoder.md).
#   FAST=1 recipes/release/vocoder.sh   runs a tiny smoke version (its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=4; seed=0
vocoder_config=models/wavenet-mini.yaml; release_name=wavenet-mini
if [ "${FAST:-0}" = 1 ]; then
  data=data/release-fast; exp=exp/release-fast
  vocoder_budget=${VOCODER_BUDGET:-0.5}; eval_limit=${EVAL_LIMIT:-2}
else
  data=data/release; exp=exp/release
  vocoder_budget=${VOCODER_BUDGET:-60}; eval_limit=${EVAL_LIMIT:-40}
fi
parse_recipe_options "$@"
if [ "${FAST:-0}" = 1 ]; then
  pack_root=$exp/models; campaign=$exp/campaign-vocoder
else
  pack_root=models; campaign=models/campaigns/wavenet-mini
fi
mkdir -p "$exp"
echo "$0 $*" >>"$exp/command.txt"

if stage_enabled 1; then
  log "Stage 1: the release corpus and its manifests (run.sh stages 1-2): $data"
  bash recipes/release/run.sh --stop-stage 2 --data "$data" --exp "$exp" --seed "$seed"
fi
if stage_enabled 2; then
  log "Stage 2: a $vocoder_budget-minute campaign of $(basename "$vocoder_config" .yaml), resuming: $data/train.jsonl -> $exp/vocoder"
  init_args=()
  if [ -n "${INIT_FROM:-}" ]; then
    [ -d "$exp/vocoder" ] || log "a new run from the weights of $INIT_FROM (not the committed campaign)"
    init_args=(--init-from "$INIT_FROM")
  else
    restore_campaign "$exp/vocoder" "$campaign"
  fi
  speechkit train vocoder --config "$vocoder_config" --train "$data/train.jsonl" --out "$exp/vocoder" \
    --time-budget "$vocoder_budget" --quiet "${init_args[@]}"
fi
if stage_enabled 3; then
  log "Stage 3: vocode $eval_limit test utterances, LSD and the released ASR's WER: $data/test.jsonl -> $exp/vocoder_eval"
  rm -rf "$exp/vocoder_eval"
  speechkit eval-vocoder "$exp/vocoder" --manifest "$data/test.jsonl" --out "$exp/vocoder_eval" --limit "$eval_limit" \
    --asr ds2-mini
fi
if stage_enabled 4; then
  log "Stage 4: save the resumable checkpoint (weights, optimizer, position): $exp/vocoder -> $campaign"
  save_campaign "$exp/vocoder" "$campaign" config.yaml train_log.csv command.txt
fi
if stage_enabled 5; then
  log "Stage 5: pack the release (float16 weights, model card): $exp/vocoder -> $pack_root/$release_name"
  SPEECHKIT_MODELS=$pack_root speechkit models pack "$exp/vocoder" --name "$release_name" --float16 --force \
    --probe "$data/test.jsonl" \
    --data "release corpus ($data): synth-mini --train-hours 11 --extra-train-speakers 360; test = the mini test set (unseen speakers)" \
    --description "WaveNet mini (20 layers, 32 channels, mu-law 256) on the residual of a 16th-order LPC filter taken from its mel (ExcitNet), trained on 400 synthetic voices" \
    --notes recipes/release/vocoder.md
fi
log "Done: $exp [elapsed=${SECONDS}s]"

#!/usr/bin/env bash
# The release recipe: synthesise the release corpus (11 h of training audio from 400 synthetic speakers;
# dev and test are the mini corpus's own, so the released model is measured on unseen mini test speakers),
# train ds2-mini on it in time-budgeted campaigns, each resuming the last, and pack models/ds2-mini.
#
# Usage: recipes/release/run.sh [--stage N] [--stop-stage N] [--exp DIR] [--data DIR] [--seed N]
#   Stages: 1 corpus, 2 manifests, 3 pruned LM, 4 ASR campaign (ASR_BUDGET minutes; resumes every time),
#           5 alpha/beta tuning, 6 test evaluation (greedy, beam + LM), 7 pack into models/ds2-mini,
#           (its card appends recipes/release/campaigns.md, the campaigns so far: add a row per campaign),
#           8 save the resumable checkpoint into models/campaigns/ds2-mini (commit it: the next campaign,
#           on another machine, starts from it when $exp/asr does not exist).
#   INIT_FROM=RUN|MODEL starts a new campaign (no $exp/asr yet) from those weights instead of the committed
#   checkpoint: the way to change the preset's schedule or augmentation, or the corpus, between campaigns.
#   Stages 1-3 skip finished work; 4-8 run again on each call, so one call is one campaign.
#   AUGMENT=1 trains on the corpus plus augmented copies (stage 2: `speechkit data augment`, speed 0.9 and 1.1
#   and one noisy copy at 5-25 dB SNR of pink, brown or babble noise, into $data/augmented): a new corpus, so the
#   first such campaign needs INIT_FROM, and every later one the same AUGMENT.
#   FLITE_SHARE=S synthesises a corpus whose training utterances are a share S spoken by flite speakers
#   (`synth-mini --train-flite-share`; by default each training speaker says as much, and flite's 100 of 400
#   voices say 17% of it): a new corpus, so give it its own --data and --exp, and INIT_FROM.
#   FAST=1 recipes/release/run.sh   runs a tiny smoke version (its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=8; seed=0
asr_config=models/ds2-mini-release.yaml; release_name=ds2-mini
if [ "${FAST:-0}" = 1 ]; then
  data=data/release-fast; exp=exp/release-fast
  synth_args=(--train-hours 0.05 --dev-minutes 0.4 --test-minutes 0.4 --extra-train-speakers 20)
  asr_budget=${ASR_BUDGET:-1}; asr_args=(--epochs 2); lm_order=3; lm_prune=(0 0 1)
  tune_args=(--alphas 0.5 1.0 --betas 0.0 1.0 --beam-width 16)
else
  data=data/release; exp=exp/release
  synth_args=(--train-hours "${TRAIN_HOURS:-11}" --extra-train-speakers "${EXTRA_SPEAKERS:-360}")
  asr_budget=${ASR_BUDGET:-60}; asr_args=(); lm_order=4; lm_prune=(0 0 1 1)
  tune_args=(--alphas 0.5 0.75 1.0 1.25 1.5 2.0 --betas 0.0 0.5 1.0 2.0 3.0 --beam-width 64 --jobs 2)
fi
[ -n "${FLITE_SHARE:-}" ] && synth_args+=(--train-flite-share "$FLITE_SHARE")
parse_recipe_options "$@"
train=$data/train.jsonl
[ "${AUGMENT:-0}" = 1 ] && train=$data/augmented/train.jsonl
if [ "${FAST:-0}" = 1 ]; then
  pack_root=$exp/models; campaign=$exp/campaign
else
  pack_root=models; campaign=models/campaigns/ds2-mini
fi
mkdir -p "$exp"
echo "$0 $*" >>"$exp/command.txt"

if stage_enabled 1; then
  log "Stage 1: synthesise the release corpus: ../shared/corpus/books -> $data"
  speechkit data synth-mini --out "$data" --seed "$seed" "${synth_args[@]}"
fi
if stage_enabled 2; then
  log "Stage 2: write manifests: $data/{train,dev,test} -> $data/{train,dev,test}.jsonl"
  for split in train dev test; do
    [ -s "$data/$split.jsonl" ] || speechkit data import-librispeech "$data/$split" --out "$data/$split.jsonl"
  done
  if [ "${AUGMENT:-0}" = 1 ]; then
    log "Stage 2: augmented copies (speed 0.9, 1.1; one noisy copy): $data/train.jsonl -> $train"
    speechkit data augment "$data/train.jsonl" --out "$data/augmented" --speeds 0.9 1.1 --noise pink brown babble \
      --snr 5 25 --noisy-copies 1 --seed "$seed"
  fi
fi
if stage_enabled 3; then
  log "Stage 3: build the pruned $lm_order-gram LM (trie, shipped with the model): $data/lm_text.txt -> $exp/lm"
  [ -s "$exp/lm/lm.json" ] || speechkit lm build --text "$data/lm_text.txt" --order "$lm_order" --out "$exp/lm" \
    --prune "${lm_prune[@]}" --binary-type trie
fi
if stage_enabled 4; then
  log "Stage 4: a $asr_budget-minute campaign of $(basename "$asr_config" .yaml), resuming: $train -> $exp/asr"
  if [ -n "${INIT_FROM:-}" ]; then
    asr_args+=(--init-from "$INIT_FROM")
  else
    restore_campaign "$exp/asr" "$campaign"
  fi
  speechkit train asr --config "$asr_config" --train "$train" --dev "$data/dev.jsonl" --out "$exp/asr" \
    --time-budget "$asr_budget" --quiet "${asr_args[@]}"
fi
if stage_enabled 5; then
  log "Stage 5: tune alpha and beta on dev: $exp/asr + $exp/lm -> $exp/asr/decode.yaml"
  speechkit lm tune "$exp/asr" --lm "$exp/lm" --dev "$data/dev.jsonl" "${tune_args[@]}"
fi
if stage_enabled 6; then
  log "Stage 6: evaluate greedy and beam + LM: $data/test.jsonl -> $exp/eval/{greedy,beam_lm}"
  speechkit eval "$exp/asr" --manifest "$data/test.jsonl" --out "$exp/eval/greedy" --decoder greedy
  speechkit eval "$exp/asr" --manifest "$data/test.jsonl" --out "$exp/eval/beam_lm"
fi
if stage_enabled 7; then
  log "Stage 7: pack the release (float16 weights, LM, model card): $exp/asr -> $pack_root/$release_name"
  SPEECHKIT_MODELS=$pack_root speechkit models pack "$exp/asr" --name "$release_name" --float16 --force \
    --probe "$data/test.jsonl" --eval "test_greedy=$exp/eval/greedy/report.json" \
    --eval "test_beam_lm=$exp/eval/beam_lm/report.json" \
    --data "release corpus ($data): synth-mini --train-hours ${TRAIN_HOURS:-11} --extra-train-speakers ${EXTRA_SPEAKERS:-360}${FLITE_SHARE:+ --train-flite-share $FLITE_SHARE}$([ "${AUGMENT:-0}" = 1 ] && echo ", with speed 0.9/1.1 and noisy copies (AUGMENT=1)"); test = the mini test set (unseen speakers)" \
    --description "Deep Speech 2 mini (3 x BiGRU-192, 80-bin log-mel), trained on 400 synthetic voices" \
    --notes recipes/release/campaigns.md
fi
if stage_enabled 8; then
  log "Stage 8: save the resumable checkpoint (weights, optimizer, position): $exp/asr -> $campaign"
  save_campaign "$exp/asr" "$campaign" config.yaml vocabulary.json train_log.csv command.txt
fi
log "Done: $exp [elapsed=${SECONDS}s]"

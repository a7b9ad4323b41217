#!/usr/bin/env bash
# The release recipe: synthesise the release corpus (5 h of training audio from 200 synthetic speakers;
# dev and test are the mini corpus's own, so the released model is measured on unseen mini test speakers)
# and write its manifests. The training stages follow once the release campaign settles.
#
# Usage: recipes/release/run.sh [--stage N] [--stop-stage N] [--exp DIR] [--data DIR] [--seed N]
#   Stages: 1 corpus, 2 manifests. Finished stages are skipped; an interrupted stage 1 resumes.
#   FAST=1 recipes/release/run.sh   runs a tiny smoke version (its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=2; seed=0
if [ "${FAST:-0}" = 1 ]; then
  data=data/release-fast; exp=exp/release-fast
  synth_args=(--train-hours 0.05 --dev-minutes 0.4 --test-minutes 0.4 --extra-train-speakers 20)
else
  data=data/release; exp=exp/release
  synth_args=(--train-hours "${TRAIN_HOURS:-5}" --extra-train-speakers "${EXTRA_SPEAKERS:-160}")
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$exp"
echo "$0 $*" >"$exp/command.txt"

if stage_enabled 1; then
  log "Stage 1: synthesise the release corpus: ../shared/corpus/books -> $data"
  speechkit data synth-mini --out "$data" --seed "$seed" "${synth_args[@]}"
fi
if stage_enabled 2; then
  log "Stage 2: write manifests: $data/{train,dev,test} -> $data/{train,dev,test}.jsonl"
  for split in train dev test; do
    [ -s "$data/$split.jsonl" ] || speechkit data import-librispeech "$data/$split" --out "$data/$split.jsonl"
  done
fi
log "Done: $data [elapsed=${SECONDS}s]"

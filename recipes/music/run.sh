#!/usr/bin/env bash
# The music recipe: render the piano-triads corpus with fluidsynth, check the chord recogniser on it, train an
# unconditional and a chord-conditioned WaveNet under a time budget each, then generate primed and unprimed
# clips from both and score them (requested-chord accuracy, pitch-class histogram distance, music share).
#
# Usage: recipes/music/run.sh [--stage N] [--stop-stage N] [--exp DIR] [--data DIR] [--seed N]
#   Stages: 1 corpus, 2 chord recogniser on the corpus, 3 unconditional WaveNet, 4 chord-conditioned WaveNet,
#           5 generate and score -> $exp/eval/report.md, 6 save both training runs into
#           models/campaigns/wavenet-triads{,-chords} (commit them: on another machine, stages 3 and 4 start
#           from them when $exp/uncond or $exp/chords does not exist). Stages 1-2 skip finished work; each
#           call of stage 3 or 4 continues its run exactly for another budget (minutes): UNCOND_BUDGET
#           (default 60), CHORDS_BUDGET (default 120).
#   FAST=1 recipes/music/run.sh   runs a tiny smoke version (about 2 min; its figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/common/stages.sh

stage=1; stop_stage=6; seed=0
if [ "${FAST:-0}" = 1 ]; then
  data=data/triads-fast; exp=exp/music-fast
  synth_args=(--octaves 4 --inversions 0 1)
  uncond_budget=0.1; chords_budget=0.1; check_args=(--limit 24)
  eval_args=(--clips 3 --seconds 0.2 --prime-seconds 0.1 --plots 1)
else
  data=data/triads; exp=exp/music
  synth_args=()
  uncond_budget=${UNCOND_BUDGET:-60}; chords_budget=${CHORDS_BUDGET:-120}; check_args=()
  eval_args=(--clips 48 --seconds 1.0 --prime-seconds 0.25 --plots 2)
fi
parse_recipe_options "$@"
campaigns=models/campaigns
[ "${FAST:-0}" = 1 ] && campaigns=$exp/campaigns
mkdir -p "$exp"
echo "$0 $*" >"$exp/command.txt"

if stage_enabled 1; then
  log "Stage 1: render the piano-triads corpus with fluidsynth -> $data/{train,test}.jsonl"
  speechkit data synth-triads --out "$data" --seed "$seed" "${synth_args[@]}"
fi
if stage_enabled 2; then
  log "Stage 2: chord recogniser on the corpus: $data/{train,test}.jsonl -> $exp/chords.json"
  [ -s "$exp/chords.json" ] || speechkit eval-chords "$data/train.jsonl" "$data/test.jsonl" --out "$exp/chords.json" \
    "${check_args[@]}"
fi
if stage_enabled 3; then
  log "Stage 3: train wavenet-triads (unconditional) for at most $uncond_budget min: $data/train.jsonl -> $exp/uncond"
  restore_campaign "$exp/uncond" "$campaigns/wavenet-triads"
  speechkit train vocoder --config models/wavenet-triads.yaml --train "$data/train.jsonl" \
    --out "$exp/uncond" --time-budget "$uncond_budget" --quiet
fi
if stage_enabled 4; then
  log "Stage 4: train wavenet-triads-chords (chord-conditioned) for at most $chords_budget min: $data/train.jsonl -> $exp/chords"
  restore_campaign "$exp/chords" "$campaigns/wavenet-triads-chords"
  speechkit train vocoder --config models/wavenet-triads-chords.yaml \
    --train "$data/train.jsonl" --out "$exp/chords" --time-budget "$chords_budget" --quiet
fi
if stage_enabled 5; then
  log "Stage 5: generate primed and unprimed clips and score them: $exp/{uncond,chords} -> $exp/eval/report.md"
  speechkit eval-music "$exp/uncond" "$exp/chords" --train "$data/train.jsonl" --test "$data/test.jsonl" \
    --out "$exp/eval" --seed "$seed" "${eval_args[@]}"
fi
if stage_enabled 6; then
  log "Stage 6: save the training runs (model, checkpoint, position): $exp/{uncond,chords} -> $campaigns"
  for pair in uncond:wavenet-triads chords:wavenet-triads-chords; do
    run=$exp/${pair%%:*}
    if [ -s "$run/backup/state.json" ]; then
      save_campaign "$run" "$campaigns/${pair#*:}" config.yaml train_log.csv command.txt \
        $([ -f "$run/speakers.json" ] && echo speakers.json)
    fi
  done
fi
log "Done: $exp/eval/report.md [elapsed=${SECONDS}s]"

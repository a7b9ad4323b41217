# Shared stages 3-10 of the speechkit recipes (sourced, not run). A corpus recipe sets these variables,
# runs its own stages 1-2 (corpus and manifests), then calls `run_model_stages`:
#   stage stop_stage exp            stage range and experiment folder
#   train dev test                  manifests; test may list several, space-separated (first one is reported)
#   lm_text lm_order lm_args        LM text file, n-gram order, extra `speechkit lm build` flags (array)
#   asr_config asr_budget asr_args  ASR preset, training time budget in minutes, extra `train asr` flags (array)
#   tune_args                       extra `speechkit lm tune` flags (array)
#   vocoder_config vocoder_train vocoder_budget vocode_limit
#   tts_data tts_synth_args tts_config tts_budget tts_eval_limit
#                                   optional text to speech (stage 10): a single-speaker corpus in $tts_data, its
#                                   durations from the released ASR model (CTC forced alignment), a TTS model trained
#                                   for at most $tts_budget min into $exp/tts, evaluated into $exp/tts_eval
#   release_tts                     optional released TTS model (a folder): stage 10 evaluates it instead of
#                                   aligning and training one
#   release_asr                     optional released ASR model (a name or folder): stage 6 evaluates it next
#                                   to the run ($exp/eval_released, side by side in the report), and it
#                                   recognises stage 8's round trip, so the vocoder is judged by a model that works

log() { printf '%s (%s:%s) %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S)" "$(basename "${BASH_SOURCE[1]}")" "${BASH_LINENO[0]}" "$*"; }
stage_enabled() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# print_recipe_help: the recipe's header comment (its usage), without the comment marks.
print_recipe_help() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# parse_recipe_options "$@": the options every corpus recipe takes; sets stage, stop_stage, exp, data and seed.
parse_recipe_options() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --stage) stage=$2; shift 2 ;;
      --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
      --exp) exp=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      --seed) seed=$2; shift 2 ;;
      -h|--help) print_recipe_help; exit 0 ;;
      *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
  done
}

# save_campaign RUN DEST FILE...: copy a run's resumable checkpoint (the listed files of RUN, its backup
# weights and position) into DEST, replacing it, for the next campaign on another machine (commit DEST).
# model.keras stays behind (a release holds the best model), so the saved position forgets the best dev
# figure: the next campaign's first dev evaluation then writes a model.
save_campaign() {
  local run=$1 dest=$2; shift 2
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/backup"
  local name; for name in "$@"; do cp "$run/$name" "$dest.tmp/"; done
  cp "$run/backup"/ckpt-*.weights.h5 "$dest.tmp/backup/"
  python - "$run/backup/state.json" "$dest.tmp/backup/state.json" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
json.dump(dict(state, best=None), open(sys.argv[2], "w"), indent=2)
PY
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

# restore_campaign RUN CAMPAIGN: when RUN does not exist yet, start it from the committed checkpoint CAMPAIGN
# (save_campaign's copy), so that a campaign continues on another machine.
restore_campaign() {
  local run=$1 campaign=$2
  if [ ! -d "$run" ] && [ -s "$campaign/backup/state.json" ]; then
    log "no $run yet: continuing the committed campaign checkpoint $campaign"
    mkdir -p "$run" && cp -r "$campaign/." "$run/"
  fi
}

run_model_stages() {
  local first_test=${test%% *} release=${release_asr:-}
  if stage_enabled 3; then
    log "Stage 3: build the KenLM language model: $lm_text -> $exp/lm"
    [ -s "$exp/lm/lm.json" ] || speechkit lm build --text "$lm_text" --order "$lm_order" --out "$exp/lm" "${lm_args[@]}"
  fi
  if stage_enabled 4; then
    log "Stage 4: train $(basename "$asr_config" .yaml) for at most $asr_budget min: $train -> $exp/asr"
    [ -f "$exp/asr/DONE" ] || speechkit train asr --config "$asr_config" --train "$train" --dev "$dev" \
      --out "$exp/asr" --time-budget "$asr_budget" "${asr_args[@]}"
  fi
  if stage_enabled 5; then
    log "Stage 5: tune alpha and beta on dev: $exp/asr + $exp/lm -> $exp/asr/decode.yaml"
    [ -s "$exp/asr/decode.yaml" ] || speechkit lm tune "$exp/asr" --lm "$exp/lm" --dev "$dev" "${tune_args[@]}"
  fi
  if stage_enabled 6; then
    local manifest name
    for manifest in $test; do
      name=$(basename "$manifest" .jsonl)
      log "Stage 6: evaluate greedy, beam, beam + LM: $manifest -> $exp/eval/$name/{greedy,beam,beam_lm}"
      [ -s "$exp/eval/$name/greedy/report.json" ] || speechkit eval "$exp/asr" --manifest "$manifest" --out "$exp/eval/$name/greedy" --decoder greedy
      [ -s "$exp/eval/$name/beam/report.json" ] || speechkit eval "$exp/asr" --manifest "$manifest" --out "$exp/eval/$name/beam" --decoder beam --lm none
      [ -s "$exp/eval/$name/beam_lm/report.json" ] || speechkit eval "$exp/asr" --manifest "$manifest" --out "$exp/eval/$name/beam_lm" --decoder beam --lm "$exp/lm"
      [ -n "$release" ] || continue
      log "Stage 6: evaluate the released model $release: $manifest -> $exp/eval_released/$name/{greedy,beam,beam_lm}"
      [ -s "$exp/eval_released/$name/greedy/report.json" ] || speechkit eval --model "$release" --manifest "$manifest" --out "$exp/eval_released/$name/greedy" --decoder greedy
      [ -s "$exp/eval_released/$name/beam/report.json" ] || speechkit eval --model "$release" --manifest "$manifest" --out "$exp/eval_released/$name/beam" --decoder beam --lm none
      [ -s "$exp/eval_released/$name/beam_lm/report.json" ] || speechkit eval --model "$release" --manifest "$manifest" --out "$exp/eval_released/$name/beam_lm"
    done
  fi
  if stage_enabled 7; then
    log "Stage 7: train $(basename "$vocoder_config" .yaml) for at most $vocoder_budget min: $vocoder_train -> $exp/vocoder"
    [ -f "$exp/vocoder/DONE" ] || speechkit train vocoder --config "$vocoder_config" --train "$vocoder_train" \
      --out "$exp/vocoder" --time-budget "$vocoder_budget"
  fi
  if stage_enabled 8; then
    log "Stage 8: copy-synthesis and ASR round trip (${release:-$exp/asr}): $first_test -> $exp/vocoder_eval"
    [ -s "$exp/vocoder_eval/report.json" ] || speechkit eval-vocoder "$exp/vocoder" --manifest "$first_test" \
      --out "$exp/vocoder_eval" --limit "$vocode_limit" --asr "${release:-$exp/asr}"
  fi
  if stage_enabled 9; then
    log "Stage 9: export and check both SavedModels: $exp/{asr,vocoder} -> $exp/export/{asr,vocoder}"
    [ -s "$exp/export/asr/saved_model.pb" ] || speechkit export asr "$exp/asr" --out "$exp/export/asr"
    [ -s "$exp/export/vocoder/saved_model.pb" ] || speechkit export vocoder "$exp/vocoder" --out "$exp/export/vocoder"
    speechkit export check "$exp/export" --manifest "$first_test" --asr-run "$exp/asr" --vocoder-run "$exp/vocoder"
  fi
  if stage_enabled 10 && [ -n "${tts_data:-}" ]; then
    local aligner=${release:-$exp/asr}
    if [ -n "${release_tts:-}" ]; then
      log "Stage 10: text to speech: single-speaker corpus, the released $release_tts on its test sentences: $tts_data -> $exp/tts_eval"
    else
      log "Stage 10: text to speech: single-speaker corpus, durations by $aligner, $(basename "$tts_config" .yaml) for at most $tts_budget min: $tts_data -> $exp/tts, $exp/tts_eval"
    fi
    speechkit data synth-mini --out "$tts_data" --single-speaker "${tts_synth_args[@]}"
    local tts_model=${release_tts:-$exp/tts}
    if [ -z "${release_tts:-}" ]; then
      [ -s "$tts_data/train.durations.jsonl" ] || speechkit data durations "$tts_data/train.jsonl" --model "$aligner" \
        --config "$tts_config" --out "$tts_data/train.durations.jsonl"
      [ -f "$exp/tts/DONE" ] || speechkit train tts --config "$tts_config" --train "$tts_data/train.jsonl" \
        --durations "$tts_data/train.durations.jsonl" --out "$exp/tts" --time-budget "$tts_budget" --quiet
    fi
    [ -s "$exp/tts_eval/report.json" ] || speechkit eval-tts --model "$tts_model" --manifest "$tts_data/test.jsonl" \
      --out "$exp/tts_eval" --asr "$aligner" --limit "$tts_eval_limit"
  fi
  if stage_enabled 11; then
    log "Stage 11: write the report: $exp -> $exp/report.md, $exp/report.html"
    speechkit report "$exp"
  fi
}

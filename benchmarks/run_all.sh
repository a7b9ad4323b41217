#!/usr/bin/env bash
# Run every benchmarks/bench_*.py on the mini corpus and print the BENCHMARKS.md rows they produce.
#
# Usage: bash benchmarks/run_all.sh [--data data/mini] [--exp exp/mini] [--out exp/bench] [--baseline-rev d08cc79]
#                                   [--streaming-run RUN] [--chords-run RUN] [--only bench_a,bench_b]
#
# The benchmarks read the mini recipe's outputs (corpus, ASR run, LM, vocoder run); when they are
# missing, the recipe runs first (recipes/mini/run.sh, which resumes whatever exists). bench_training
# compares the working tree with --baseline-rev, extracted with `git archive` into OUT/baseline.
# bench_streaming needs a trained ds2-streaming run (--streaming-run), and bench_chord_onset a chord-conditioned
# music WaveNet (--chords-run, recipes/music/run.sh); without one each is skipped, and said so.
# Each benchmark's output and log go to OUT/<bench>.{out,log}. A failing benchmark does not stop
# the others; the script exits 1 at the end if any failed. This takes a long time on 2 cores
# (about an hour, more when the recipe has to run first).
set -euo pipefail
cd "$(dirname "$0")/.."

data=data/mini; exp=exp/mini; out=exp/bench; baseline_rev=d08cc79; only=""; streaming_run=""; chords_run=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --baseline-rev) baseline_rev=$2; shift 2 ;;
    --streaming-run) streaming_run=$2; shift 2 ;;
    --chords-run) chords_run=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%S) (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*" >&2; }
python=${PYTHON:-python}
mkdir -p "$out"

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
for name in ${only//,/ }; do
  [ -f "benchmarks/$name.py" ] || { echo "$0: --only: no benchmarks/$name.py" >&2; exit 2; }
done

needs_runs=false
for name in bench_asr bench_decoding bench_wavenet bench_export bench_lpc_level bench_pulses bench_excitation; do
  wanted "$name" && needs_runs=true
done
if $needs_runs && { [ ! -f "$exp/asr/DONE" ] || [ ! -s "$exp/lm/lm.json" ] || [ ! -f "$exp/vocoder/DONE" ]; }; then
  log "the mini recipe's outputs are missing under $exp: running recipes/mini/run.sh first"
  bash recipes/mini/run.sh
fi
failed=()
bench() {
  local name=$1; shift
  wanted "$name" || return 0
  log "$name: $*"
  local started=$SECONDS
  if "$python" "benchmarks/$name.py" "$@" >"$out/$name.out" 2>"$out/$name.log"; then
    log "$name: done in $((SECONDS - started)) s"
  else
    log "$name: FAILED (exit $?); see $out/$name.log"
    failed+=("$name")
  fi
}

bench bench_padding "$data/train.jsonl"
bench bench_asr --run "$exp/asr" --manifest "$data/dev.jsonl" --manifest "$data/test.jsonl" --out "$out/asr"
bench bench_decoding --run "$exp/asr" --lm "$exp/lm" --manifest "$data/test.jsonl"
bench bench_wavenet --run "$exp/vocoder"
bench bench_export --asr-run "$exp/asr" --manifest "$data/test.jsonl" --vocoder-run "$exp/vocoder" \
  --out "$out/export" --limit 20
bench bench_reliability --work "$out/reliability"
bench bench_synth
bench bench_scoring
bench bench_segment --data "$data" --work "$out/segment"
bench bench_pitch --manifest "$data/test.jsonl"
bench bench_lpc_level --manifest "$data/test.jsonl" --asr "$exp/asr" --order 32 --work "$out/lpc_level"
bench bench_pulses "$exp/vocoder" --manifest "$data/test.jsonl"
bench bench_excitation "$exp/vocoder" --manifest "$data/test.jsonl" --asr "$exp/asr"
skipped=()
if [ -n "$streaming_run" ]; then
  bench bench_streaming measure --run "$streaming_run" --manifest "$data/test.jsonl"
elif wanted bench_streaming; then
  skipped+=(bench_streaming)
fi
if [ -n "$chords_run" ]; then
  bench bench_chord_onset "$chords_run"
elif wanted bench_chord_onset; then
  skipped+=(bench_chord_onset)
fi
if wanted bench_training; then
  rm -rf "$out/baseline" && mkdir -p "$out/baseline"
  git archive "$baseline_rev" | tar -x -C "$out/baseline"
  bench bench_training --baseline "$out/baseline"
fi

ran=""
for path in benchmarks/bench_*.py; do
  name=$(basename "$path" .py)
  if wanted "$name"; then ran="$ran $name"; fi
done
for name in $ran; do
  [[ " ${skipped[*]} " == *" $name "* ]] && { log "$name: skipped (give --streaming-run or --chords-run RUN)"; continue; }
  [ -f "$out/$name.out" ] || { log "$name: not run by this script; add it to benchmarks/run_all.sh"; failed+=("$name"); }
done

echo
echo "BENCHMARKS.md rows (date | revision | machine | command | figures):"
for name in $ran; do
  [ -f "$out/$name.out" ] && grep -E '^\| [0-9]{4}-[0-9]{2}-[0-9]{2} \|' "$out/$name.out" || true
done
log "elapsed ${SECONDS}s; outputs in $out"
if [ ${#failed[@]} -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi

#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the kenlm source distribution on PyPI and install them
# into the virtual environment's bin/. Skips the build when both tools are already there.
#
# Usage: scripts/build_kenlm.sh [VENV]   (default .venv)
# Needs the Debian packages cmake, g++, libboost-{program-options,system,thread,test}-dev, zlib1g-dev,
# libbz2-dev and liblzma-dev (the Makefile's APT_PACKAGES).
set -euo pipefail
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*"; }

venv=${1:-.venv}
bin="$venv/bin"
if [ -x "$bin/lmplz" ] && [ -x "$bin/build_binary" ]; then
  log "kenlm: lmplz and build_binary already in $bin"
  exit 0
fi
for tool in cmake g++ make; do
  command -v "$tool" >/dev/null || { log "kenlm: $tool not found; run 'make apt' first"; exit 1; }
done
version=$("$bin/python" -c 'import importlib.metadata as m; print(m.version("kenlm"))' 2>/dev/null || echo 0.3.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "kenlm: building lmplz and build_binary from kenlm==$version source in $work"
# Only the kenlm sdist itself must be source: '--no-binary :all:' would also make pip compile kenlm's
# build dependencies (the cmake PyPI package is all of CMake) just to read kenlm's metadata.
"$bin/python" -m pip download --quiet --no-deps --no-binary kenlm "kenlm==$version" -d "$work" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
archive=$(find "$work" -maxdepth 1 -name 'kenlm-*.tar.gz' | head -n 1)
[ -n "$archive" ] || { log "kenlm: pip did not download the kenlm==$version source archive"; exit 1; }
tar -xzf "$archive" -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'kenlm-*' | head -n 1)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log"; exit 1; }
log "kenlm: compiling (a few minutes on 2 cores)"
cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -n 50 "$work/build.log"; exit 1; }
install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$bin/"
echo "the quick brown fox" | "$bin/lmplz" -o 2 --discount_fallback -S 100M -T "$work" >"$work/check.arpa" 2>"$work/check.log" \
  || { cat "$work/check.log"; log "kenlm: the installed lmplz does not run"; exit 1; }
log "kenlm: installed $bin/lmplz and $bin/build_binary [elapsed=${SECONDS}s]"

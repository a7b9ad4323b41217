#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the kenlm source distribution on PyPI and install them
# into the virtual environment's bin/. Skips the build when both tools are already there.
set -euo pipefail
venv=${1:-.venv}
bin="$venv/bin"
if [ -x "$bin/lmplz" ] && [ -x "$bin/build_binary" ]; then
  echo "kenlm: lmplz and build_binary already in $bin"
  exit 0
fi
version=$("$bin/python" -c 'import importlib.metadata as m; print(m.version("kenlm"))' 2>/dev/null || echo 0.3.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "kenlm: building lmplz and build_binary from kenlm==$version source"
"$bin/python" -m pip download --quiet --no-deps --no-binary :all: "kenlm==$version" -d "$work"
tar -xzf "$work"/kenlm-*.tar.gz -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'kenlm-*' | head -n 1)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log"; exit 1; }
cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -n 50 "$work/build.log"; exit 1; }
install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$bin/"
echo "kenlm: installed $bin/lmplz and $bin/build_binary"

#!/usr/bin/env bash
# Installs loom from the build tree into a temporary prefix, builds examples/custom_loop
# against the installed package with find_package(loom), and runs it.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/bin/loom"
test -f "$work/prefix/lib/cmake/loom/loomConfig.cmake"
test -f "$work/prefix/include/loom/train/trainer.h"
# Private header-only dependencies stay private: the installed package must not ask for them.
if grep -l 'CLI11\|tomlplusplus\|nlohmann\|TOML_' "$work/prefix/lib/cmake/loom/"*.cmake; then
  echo "install_example: the installed package requires a private dependency (above)" >&2
  exit 1
fi
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/examples/custom_loop" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
"$work/build/custom_loop" "$work/model.pt"
/usr/bin/python3 -c "import sys, torch; d = torch.load(sys.argv[1]); assert '1.weight' in d, d.keys(); print('installed example OK:', len(d), 'tensors')" "$work/model.pt"

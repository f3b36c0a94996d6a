#!/usr/bin/env bash
# Installs every Debian package loom needs to build, test, benchmark and run its demo.
# Idempotent: packages already present are skipped, and nothing runs when all are there.
# Works as root or through sudo. See docs/architecture.md for why each package is used.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # tensors, autograd, c10d (+ gloo headers for -DUSE_C10D_GLOO)
  libtorch-dev libgloo-dev libopenblas0-pthread
  # parameter-server transport
  libzmq3-dev cppzmq-dev
  # CLI, config, JSON, logging, gzip
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev libfmt-dev zlib1g-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # the default data set
  dataset-fashion-mnist
  # `make fuzz` (libFuzzer on the parameter-server decoder); `make format` and its check
  clang clang-format
  # peer benchmarks and the Python interop checks (torch.load of our model files)
  python3 python3-torch
  # multi-host tests (network namespaces) and the launcher tests
  iproute2 procps
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

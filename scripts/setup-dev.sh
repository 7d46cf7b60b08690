#!/usr/bin/env bash
# Installs what Loupe's tests and model tooling need beyond npm: ffmpeg, Chromium (end-to-end tests in
# web mode), and a Python venv for the model tooling (parity test, training, conversion).
# Debian/Ubuntu; run as root or with sudo. Idempotent and quick when everything is there: `npm test` runs it first
# (pretest), so the README's test command works on a fresh machine as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v chromium >/dev/null || need+=(chromium)
# Debian's torch 1.13 installs in seconds; OpenBLAS makes it ~26x faster than the generic BLAS it links.
dpkg -s python3-torch >/dev/null 2>&1 || need+=(python3-torch)
dpkg -s libopenblas0-openmp >/dev/null 2>&1 || need+=(libopenblas0-openmp)
dpkg -s python3-venv >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
# pip only when the requirements changed since the last successful install (a stamp in the venv).
stamp=.venv/.loupe-requirements.sha256
want=$(sha256sum models/requirements.txt scripts/setup-dev.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q -r models/requirements.txt
  # fp16 conversion uses onnxconverter-common 1.14 (1.16 crashes on our graphs); its protobuf pin is not needed.
  .venv/bin/pip install -q --no-deps "onnxconverter-common==1.14.0"
  echo "$want" > "$stamp"
fi

#!/usr/bin/env bash
# The four-way ablation at an equal, short budget: no connector (penultimate layer only), STI, SCI, DCI.
# Each starts from the same pretrained tower and trains the same number of steps (same data, same
# schedule) with one thread, two at a time; a step budget keeps them equal however busy the machine is.
#   bash models/ablation.sh [STEPS]   (from the project root; needs runs/vision.pt)
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-400}
py() { TOKENIZERS_PARALLELISM=false PYTHONPATH=. ../.venv/bin/python "$@"; }
for pair in "none sti" "sci dci"; do
  for c in $pair; do
    py -m loupe_dc.train --connector "$c" --steps "$N" --threads 1 --lr 1e-3 --vision-init runs/vision.pt --run "runs/ablation-$c" > "runs/ablation-$c.log" 2>&1 &
  done
  wait
done
for c in none sti sci dci; do
  py -m loupe_dc.convert --checkpoint "runs/ablation-$c/checkpoint" --out "runs/ablation-$c/pack" --name "ablation-$c" > /dev/null
done

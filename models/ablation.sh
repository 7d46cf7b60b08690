#!/usr/bin/env bash
# The four-way ablation at an equal, short budget: no connector (penultimate layer only), STI, SCI, DCI.
# Each starts from the same pretrained tower and trains for the same minutes with one thread, two at a time.
#   bash models/ablation.sh [MINUTES]   (from the project root; needs runs/vision.pt)
set -euo pipefail
cd "$(dirname "$0")"
M=${1:-8}
py() { TOKENIZERS_PARALLELISM=false PYTHONPATH=. ../.venv/bin/python "$@"; }
for pair in "none sti" "sci dci"; do
  for c in $pair; do
    py -m loupe_dc.train --connector "$c" --minutes "$M" --threads 1 --lr 1e-3 --vision-init runs/vision.pt --run "runs/ablation-$c" > "runs/ablation-$c.log" 2>&1 &
  done
  wait
done
for c in none sti sci dci; do
  py -m loupe_dc.convert --checkpoint "runs/ablation-$c/checkpoint" --out "runs/ablation-$c/pack" --name "ablation-$c" > /dev/null
done

#!/usr/bin/env bash
# Evaluate the four ablation runs (after ablation.sh): image QA on held-out stills (PyTorch) and zero-shot video
# QA through the app's path on the lavfi clips, the same seeds as the shipped model's tables.
#   bash models/ablation_eval.sh [VIDEO_N]   (from the project root)
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-60}
for c in none sti sci dci; do
  out="runs/ablation-$c.eval.md"
  {
    echo "## $c ($(python3 -c "import json;c=json.load(open('runs/ablation-$c/checkpoint/config.json'));print(c.get('loupe_steps'),'steps,',c.get('loupe_training_minutes'),'min')"))"
    TOKENIZERS_PARALLELISM=false PYTHONPATH=. ../.venv/bin/python -m loupe_dc.evaluate --checkpoint "runs/ablation-$c/checkpoint" --n 300
    (cd .. && npx tsx test/eval/video-eval.ts --pack "models/runs/ablation-$c/pack" --n "$N" --seed 7)
  } > "$out.tmp" 2>/dev/null
  mv "$out.tmp" "$out"
  echo "$out"
done

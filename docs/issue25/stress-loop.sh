#!/bin/bash
# Run `npx vitest run ARGS` N times in a row, stopping at the first failure (start `stress-ng --cpu 2 --timeout 0 &` first).
# usage: stress-loop.sh N LOG -- ARGS   (LOG: one line per run with its load average; LOG.out: vitest output)
N=$1; LOG=$2; shift 3
cd "$(dirname "$0")/../.."
pass=0
echo "start $(date -Is) load $(cat /proc/loadavg) cmd: npx vitest run $*" >> "$LOG"
for i in $(seq 1 "$N"); do
  t0=$(date +%s)
  if npx vitest run "$@" >> "$LOG.out" 2>&1; then
    pass=$((pass+1)); r=pass
  else
    r=FAIL
  fi
  echo "run $i $r $(( $(date +%s) - t0 ))s load $(cat /proc/loadavg)" >> "$LOG"
  [ "$r" = FAIL ] && break
done
echo "end $(date -Is) passed $pass of $i" >> "$LOG"

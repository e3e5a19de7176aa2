#!/usr/bin/env bash
# The quality regression gate for CI: run the smoke preset on the toy world and compare it with
# the committed baseline. Exit 0 ok, 1 a method got worse beyond seed noise, 2 cannot compare.
#
#   scripts/ci_gate.sh [REPORT_DIR]      (reports: gate.md, gate.xml; default: a temp dir)
#
# Env: SAEBENCH_GATE_SEEDS (default 3; 1 is ~3x faster and is compared with the baseline's σ),
#      SAEBENCH_GATE_BASELINE (default results/baselines/toyworld-smoke.json),
#      SAEBENCH_GATE_Z (default 3).
# After an intended quality change, recreate the baseline (see docs/regression-gate.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BASELINE="${SAEBENCH_GATE_BASELINE:-results/baselines/toyworld-smoke.json}"
SEEDS="${SAEBENCH_GATE_SEEDS:-3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
REPORTS="${1:-$WORK}"
mkdir -p "$REPORTS"
export HF_HUB_OFFLINE=1
# One thread: CI machines are small and shared; the numbers do not depend on it.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Cache the harvested activations inside the temp dir so a stale cache can never leak in.
export SAEBENCH_CACHE="$WORK/cache"
start=$(date +%s)
saebench run --methods topk,gated --preset smoke --seeds "$SEEDS" --device cpu \
    --out "$WORK/run" --no-progress > "$WORK/run.log" 2>&1 || { cat "$WORK/run.log"; exit 2; }
status=0
saebench check "$WORK/run" --baseline "$BASELINE" --z "${SAEBENCH_GATE_Z:-3}" \
    --markdown "$REPORTS/gate.md" --junit "$REPORTS/gate.xml" || status=$?
echo "quality gate took $(( $(date +%s) - start ))s (exit $status)"
exit $status

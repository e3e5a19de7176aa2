#!/usr/bin/env bash
# The quality regression gate for CI: rerun the committed baseline's configuration (the smoke
# preset on the toy world) and compare.
# Exit 0 ok, 1 a method got worse beyond seed noise, 2 cannot compare.
#
#   scripts/ci_gate.sh [REPORT_DIR]      (reports: gate.md, gate.xml; default: a temp dir)
#
# Env: SAEBENCH_GATE_SEEDS (default 3; 1 is ~3x faster, in a wider noise band: 4.8σ, not 2.8σ),
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
# Portable CPU numerics and one torch thread, as the committed baseline was made, so the verdict
# does not depend on the CI machine's CPU (saebench/numerics.py).
# (Assigned first, so that set -e stops the script if the command fails.)
numerics="$(python -c 'from saebench.numerics import export_lines; print(export_lines())')"
eval "$numerics"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Cache the harvested activations inside the temp dir so a stale cache can never leak in.
export SAEBENCH_CACHE="$WORK/cache"
start=$(date +%s)
status=0
# Methods, knobs and tasks come from the baseline, so tasks added to saebench later neither slow
# the gate down nor go unnoticed: they are gated once the baseline is recreated with them.
# CPU: the baseline is made on CPU, and GPU kernels give (slightly) different numbers.
saebench check --rerun "$BASELINE" --seeds "$SEEDS" --device cpu --out "$WORK/run" \
    --z "${SAEBENCH_GATE_Z:-3}" --markdown "$REPORTS/gate.md" --junit "$REPORTS/gate.xml" \
    || status=$?
echo "quality gate took $(( $(date +%s) - start ))s (exit $status)"
exit $status

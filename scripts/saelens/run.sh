#!/usr/bin/env bash
# saebench vs SAELens training-step throughput on this machine, same configurations.
#
#   scripts/saelens/run.sh            # from the repo root; nothing else should be running
#
# 1. creates the SAELens venv if missing (SAELens pins transformer-lens < 4: it cannot share ours),
# 2. runs `saebench bench --json` with our environment,
# 3. runs scripts/saelens/saelens_step_bench.py with the SAELens venv,
# 4. prints the comparison table (scripts/saelens/compare.py).
# The two benchmarks run one after the other, never together: two torch processes sharing the
# cores slow each other several-fold.
#
# Environment knobs (defaults in brackets):
#   SAELENS_VENV      the SAELens venv [.saelens-venv]
#   SAEBENCH_PYTHON   the python that has saebench installed [.venv/bin/python, else python3]
#   THREADS           torch threads for both runs [2]
#   REPEATS           timed steps per configuration, median reported [10]
#   K                 TopK's k [32]
#   TOPK_SHAPES, DENSE_SHAPES, DENSE_METHODS   what is compared (see below)
#   OUT_DIR           where ours.json / saelens.json / comparison.md go [results/saelens-compare]
#   TORCH_INDEX_URL   index for the venv's torch [https://download.pytorch.org/whl/cpu];
#                     set it empty to use pip's configured index
#   SKIP_OURS=1       reuse $OUT_DIR/ours.json;  SKIP_SAELENS=1  reuse $OUT_DIR/saelens.json
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SAELENS_VENV="${SAELENS_VENV:-.saelens-venv}"
if [[ -z "${SAEBENCH_PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then SAEBENCH_PYTHON=.venv/bin/python; else SAEBENCH_PYTHON=python3; fi
fi
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-10}"
K="${K:-32}"
OUT_DIR="${OUT_DIR:-results/saelens-compare}"
TORCH_VERSION=2.13.0
SAELENS_VERSION=6.54.12
TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"

# The configurations compared (d_in,d_sae,batch; space-separated lists): TopK on three shapes,
# L1 and gated on the toy-world shape.
read -ra TOPK_SHAPES <<<"${TOPK_SHAPES:-512,8192,1024 128,2048,1024 128,1024,1024}"
read -ra DENSE_SHAPES <<<"${DENSE_SHAPES:-128,2048,1024}"
DENSE_METHODS="${DENSE_METHODS:-l1,gated}"

mkdir -p "$OUT_DIR"

# --- 1. the SAELens venv ---------------------------------------------------------------------
if [[ ! -x "$SAELENS_VENV/bin/python" ]]; then
    echo "== creating the SAELens venv at $SAELENS_VENV"
    python3 -m venv "$SAELENS_VENV"
    echo '*' > "$SAELENS_VENV/.gitignore"  # keep it out of git status
    "$SAELENS_VENV/bin/python" -m pip install --upgrade pip
    # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
    if [[ -n "$TORCH_INDEX_URL" ]]; then
        "$SAELENS_VENV/bin/python" -m pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
    else
        "$SAELENS_VENV/bin/python" -m pip install "torch==$TORCH_VERSION"
    fi
    "$SAELENS_VENV/bin/python" -m pip install "sae-lens==$SAELENS_VERSION"
fi
"$SAELENS_VENV/bin/python" -c "import sae_lens, torch; print('SAELens venv:', sae_lens.__version__, 'torch', torch.__version__)"

# --- 2. saebench ------------------------------------------------------------------------------
# `saebench bench` times every method on every shape it is given, so it runs twice: TopK on the
# TopK shapes, the dense methods on theirs.
saebench() {
    "$SAEBENCH_PYTHON" -c 'import sys; from saebench.cli import cli; sys.exit(cli(prog_name="saebench"))' "$@"
}
if [[ "${SKIP_OURS:-0}" != 1 ]]; then
    echo "== saebench bench ($SAEBENCH_PYTHON, $THREADS threads)"
    shape_args=(); for s in "${TOPK_SHAPES[@]}"; do shape_args+=(--shape "$s"); done
    saebench bench --methods topk "${shape_args[@]}" --group-size 1 --k "$K" \
        --repeats "$REPEATS" --threads "$THREADS" --json "$OUT_DIR/ours-topk.json"
    shape_args=(); for s in "${DENSE_SHAPES[@]}"; do shape_args+=(--shape "$s"); done
    saebench bench --methods "$DENSE_METHODS" "${shape_args[@]}" --group-size 1 \
        --repeats "$REPEATS" --threads "$THREADS" --json "$OUT_DIR/ours-dense.json"
fi

# --- 3. SAELens -------------------------------------------------------------------------------
if [[ "${SKIP_SAELENS:-0}" != 1 ]]; then
    echo "== SAELens ($SAELENS_VENV, $THREADS threads)"
    config_args=()
    for s in "${TOPK_SHAPES[@]}"; do
        IFS=, read -r d m b <<<"$s"
        config_args+=(--config "method=topk,d_in=$d,d_sae=$m,batch_size=$b,k=$K")
    done
    for s in "${DENSE_SHAPES[@]}"; do
        IFS=, read -r d m b <<<"$s"
        for method in ${DENSE_METHODS//,/ }; do
            config_args+=(--config "method=$method,d_in=$d,d_sae=$m,batch_size=$b")
        done
    done
    "$SAELENS_VENV/bin/python" "$HERE/saelens_step_bench.py" --threads "$THREADS" \
        --repeats "$REPEATS" "${config_args[@]}" --json "$OUT_DIR/saelens.json"
fi

# --- 4. the table -----------------------------------------------------------------------------
echo "== saebench vs SAELens"
python3 "$HERE/compare.py" "$OUT_DIR"/ours-*.json "$OUT_DIR/saelens.json" | tee "$OUT_DIR/comparison.md"

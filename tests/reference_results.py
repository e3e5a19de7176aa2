"""The stored smoke results and the comparison every executor's smoke run must pass.

tests/data/smoke_results_topk_gated_random.csv is results.csv of
`saebench run --methods topk,gated,random --preset smoke --device cpu` with torch at the suite's
2 threads. A run in one process (the local executor) must match it metric by metric, exactly.

Ray workers run one torch thread each, which changes the float reduction order, and gated
training at lr 1e-2 amplifies that into a different SAE within seed noise (TopK and the
baselines move by at most 4e-5 relative, but for one near-zero IOI value of identity). So Ray
runs are compared with smoke_results_topk_gated_random_1thread.csv, the same command run with
OMP_NUM_THREADS=1, to RAY_RELATIVE_TOLERANCE.

Both copies and the gate baseline (results/baselines/toyworld-smoke.json) are made, and compared,
under portable CPU numerics (saebench/numerics.py, applied by tests/conftest.py): the libraries
run the same kernels on any x86-64 CPU with AVX2, so one copy holds on every CI machine. Remake
all three after an intended change, in a shell that ran `eval "$(saebench numerics)"`, with the commands above and the baseline's in
docs/regression-gate.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / "data"
COMMITTED_BASELINE = Path(__file__).parents[1] / "results" / "baselines" / "toyworld-smoke.json"

STORED_SMOKE = DATA / "smoke_results_topk_gated_random.csv"
STORED_SMOKE_ONE_THREAD = DATA / "smoke_results_topk_gated_random_1thread.csv"
GATE_BASELINE = COMMITTED_BASELINE
SMOKE_ARGS = ["--methods", "topk,gated,random", "--preset", "smoke"]
KEY = ["model", "hook", "method", "knob", "seed", "task", "metric"]
RAY_RELATIVE_TOLERANCE = 1e-5


def assert_matches_stored_smoke_results(
    results_csv: Path, rtol: float = 0.0, stored_csv: Path = STORED_SMOKE
):
    stored, fresh = pd.read_csv(stored_csv), pd.read_csv(results_csv)
    merged = stored.merge(fresh, on=KEY, how="outer", suffixes=("_stored", "_fresh"))
    missing = merged[merged.value_fresh.isna()]
    extra = merged[merged.value_stored.isna()]
    assert missing.empty, f"metrics missing from the fresh run:\n{missing[KEY].head(10)}"
    assert extra.empty, f"metrics the stored run does not have:\n{extra[KEY].head(10)}"
    close = (
        (merged.value_fresh == merged.value_stored)
        if rtol == 0
        else np.isclose(merged.value_fresh, merged.value_stored, rtol=rtol, atol=1e-9)
    )
    different = merged[~close]
    assert different.empty, (
        f"{len(different)} metric(s) differ from the stored smoke results:\n"
        f"{different[[*KEY, 'value_stored', 'value_fresh']].head(10).to_string()}"
    )

"""The stored smoke results and the comparison every executor's smoke run must pass.

tests/data/smoke_results_topk_gated_random.csv is results.csv of
`saebench run --methods topk,gated,random --preset smoke --device cpu`, remade when issue 13's
engine landed (grouped training, Gao et al.'s TopK loss: the trained SAEs changed; the random
baseline's 320 metrics matched the previous copy, 319 exactly and one circular null score to
1.3e-15 relative, so the faster tasks compute what they did). A run must match it metric by metric,
exactly, in one process (the local executor; torch at the suite's 2 threads, as the stored run had).

Ray workers run one torch thread each, which changes the float reduction order. Gated training at
lr 1e-2 amplifies that into a different SAE within seed noise (smoke FVU 0.0558 vs 0.0566, L0 43.3
vs 41.9; TopK and random are bit-identical). So Ray runs are compared with
smoke_results_topk_gated_random_1thread.csv, the same command run with OMP_NUM_THREADS=1 on the
same activations, to RAY_RELATIVE_TOLERANCE.

Exactness holds on one CPU kind: another CPU (another MKL/ATen kernel path) gives a gated SAE
within seed noise but not bit-identical (an AMD EPYC with AVX512: gated smoke FVU 0.0574 vs the
default copy's 0.0558). tests/data/machines.json maps a CPU fingerprint to that kind's own
copies (both CSVs and the gate baseline, made by the same commands on it); any other CPU is
compared with the default copies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / "data"
COMMITTED_BASELINE = Path(__file__).parents[1] / "results" / "baselines" / "toyworld-smoke.json"


def cpu_fingerprint() -> str:
    """The CPU the float kernels run on: vendor, family, model, name and torch's dispatch level.
    MKL and torch pick different kernels (and so reduction orders) on different CPUs, and gated
    training amplifies the last bits into a different SAE, so an exact reference holds for one
    CPU kind only."""
    import torch

    fields = {}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux, or not readable: the capability alone
        lines = []
    if lines:
        for line in lines:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model", "model name") and key not in fields:
                fields[key] = value.strip()
    fields["capability"] = torch.backends.cpu.get_cpu_capability()
    return "|".join(f"{k}={v}" for k, v in sorted(fields.items()))


def machine_copies() -> dict[str, Path]:
    """The stored copies for this CPU kind (tests/data/machines.json lists the kinds with their
    own), else the default copies, made on the CPU kind the project's CI has run on."""
    default = {
        "two_threads": DATA / "smoke_results_topk_gated_random.csv",
        "one_thread": DATA / "smoke_results_topk_gated_random_1thread.csv",
        "gate_baseline": COMMITTED_BASELINE,
    }
    listed = json.loads((DATA / "machines.json").read_text())
    entry = listed.get(cpu_fingerprint())
    return {k: DATA / v for k, v in entry.items()} if entry else default


COPIES = machine_copies()
STORED_SMOKE = COPIES["two_threads"]
STORED_SMOKE_ONE_THREAD = COPIES["one_thread"]
GATE_BASELINE = COPIES["gate_baseline"]
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

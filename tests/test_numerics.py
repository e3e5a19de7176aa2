"""Portable CPU numerics (saebench/numerics.py): the suite runs under them, and they reach every
library whose kernels they fix. The stored smoke references and the gate baseline depend on it."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from saebench.cli import cli
from saebench.numerics import (
    PORTABLE_CPU_NUMERICS,
    apply_portable_cpu_numerics,
    export_lines,
    numerics_in_effect,
)


def test_the_suite_runs_under_portable_numerics():
    for name, value in PORTABLE_CPU_NUMERICS.items():
        assert os.environ[name] == value
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    targets = {
        dispatch["current"]
        for per_dtype in np.lib.introspect.opt_func_info().values()
        for dispatch in per_dtype.values()
    }
    assert not any("V4" in t or "AVX512" in t for t in targets), targets


def test_openblas_runs_its_pinned_kernels():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (loads SciPy's own OpenBLAS too)

    blas = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
    assert blas, "no OpenBLAS loaded"
    assert {i["architecture"] for i in blas} == {PORTABLE_CPU_NUMERICS["OPENBLAS_CORETYPE"]}


def test_applying_after_numpy_is_loaded_is_refused_naming_the_fix(monkeypatch):
    apply_portable_cpu_numerics()  # the environment already held them when numpy loaded: no-op
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(RuntimeError, match=r"before importing numpy.*saebench numerics.*-p no:"):
        apply_portable_cpu_numerics()
    assert os.environ["MKL_CBWR"] == "AUTO"  # nothing half-applied


def test_a_fresh_interpreter_gets_the_settings_before_torch_loads():
    code = (
        "from saebench.numerics import apply_portable_cpu_numerics as a; a(); import torch; "
        "print(torch.backends.cpu.get_cpu_capability())"
    )
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_CPU_NUMERICS}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "AVX2"


def test_numerics_command_prints_exports_a_shell_can_eval():
    result = CliRunner().invoke(cli, ["numerics"])
    assert result.exit_code == 0 and result.output.strip() == export_lines()
    shell = subprocess.run(
        ["bash", "-c", f'eval "$(cat <<\'X\'\n{result.output}X\n)"; echo "$MKL_CBWR"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.strip() == PORTABLE_CPU_NUMERICS["MKL_CBWR"]


def test_numerics_in_effect_reports_the_settings_and_the_dispatch_level():
    record = numerics_in_effect()
    assert record["torch_cpu_capability"] == "AVX2"
    assert {k: record[k] for k in PORTABLE_CPU_NUMERICS} == PORTABLE_CPU_NUMERICS

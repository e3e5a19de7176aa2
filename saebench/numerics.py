"""Portable CPU numerics: the same float results on any x86-64 CPU with AVX2 (same packages).

On CPU the numbers of a run depend on the kernels the libraries pick for the machine: torch's ATen
kernels by vector width (AVX2, AVX-512), MKL's by CPU model, oneDNN's JIT by ISA, OpenBLAS's
(under numpy, SciPy and scikit-learn) by CPU model, numpy's own by its dispatch targets. A
different reduction order changes the last bits, and SAE training amplifies them into a different
SAE (within seed noise, not bit-identical). The settings below make every one of those libraries
run the same code on any x86-64 CPU with AVX2: ATen's AVX2 kernels (not AVX-512), MKL's
conditional numerical reproducibility (CBWR) branch for any vendor's CPU, oneDNN capped at AVX2,
OpenBLAS's Haswell kernels with a fixed L2 size (instead of the detected one) and numpy's AVX2
targets. They are read when each library loads, so they must be in the environment before numpy
or torch is imported: export them in the shell (`saebench numerics` prints them), or call
`apply_portable_cpu_numerics()` first thing. The test suite and scripts/ci_gate.sh run under
them, so their stored reference results hold on any CI machine. A user's run does not get them
unless asked: they are slower (MKL's SSE2 branch; AVX2 where AVX-512 was there), and
docs/regression-gate.md says by how much.

This module imports nothing heavy, so that it can run before numpy and torch.
"""

from __future__ import annotations

import os
import sys

PORTABLE_CPU_NUMERICS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    # OpenBLAS sizes some blocks by the L2 it detects; fixed, so the blocking is the same too.
    "OPENBLAS_L2_SIZE": "512",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
# Libraries that read the settings when they load: applying them after any of these is too late.
READ_AT_LOAD = ("numpy", "torch", "scipy", "sklearn", "pandas")


def apply_portable_cpu_numerics() -> None:
    """Set the portable-numerics environment, replacing other values of the same variables.
    Raises RuntimeError if a library that reads them has already been imported (it would
    silently ignore them), unless the environment already held them all when it loaded."""
    if all(os.environ.get(name) == value for name, value in PORTABLE_CPU_NUMERICS.items()):
        return
    loaded = [name for name in READ_AT_LOAD if name in sys.modules]
    if loaded:
        raise RuntimeError(
            f"portable CPU numerics must be applied before importing {', '.join(loaded)}: "
            "call apply_portable_cpu_numerics() first, export the variables that "
            "`saebench numerics` prints before starting Python, or, under pytest, disable the "
            "plugin that imports them early (`-p no:NAME`)"
        )
    os.environ.update(PORTABLE_CPU_NUMERICS)


def numerics_in_effect() -> dict[str, str | None]:
    """What this process runs under: the environment settings above (None where unset) and the
    vector width torch's ATen kernels dispatch to. Recorded in run.json."""
    import torch

    settings: dict[str, str | None] = {name: os.environ.get(name) for name in PORTABLE_CPU_NUMERICS}
    settings["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return settings


def export_lines() -> str:
    """The settings as shell `export` lines."""
    return "\n".join(f"export {name}='{value}'" for name, value in PORTABLE_CPU_NUMERICS.items())

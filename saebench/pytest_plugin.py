"""The pytest plugin (entry point `pytest11`) that gives plugin authors the saebench fixtures.

pytest loads every entry-point plugin before any conftest.py, so this module imports nothing
heavy: a project that must set environment variables before numpy or torch loads (as saebench's
own suite does for portable CPU numerics) can still do so in its conftest.py. The checks
themselves live in saebench.testing and load when a fixture is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from saebench.testing import QualityGate


@pytest.fixture
def saebench_method_conformance():
    """Fixture: call it with a MethodSpec to run the method conformance checks."""
    from saebench.testing import check_method_conformance

    return check_method_conformance


@pytest.fixture
def saebench_task_conformance():
    """Fixture: call it with a TaskSpec (and optionally ctx= or ctx_factory=)."""
    from saebench.testing import check_task_conformance

    return check_task_conformance


@pytest.fixture
def saebench_quality_gate(tmp_path: Path) -> QualityGate:
    """Fixture: saebench_quality_gate(BASELINE[, run_dir=...]) fails the test on a regression.
    Without run_dir it reruns the baseline's config (1 seed by default)."""
    from saebench.testing import QualityGate

    return QualityGate(tmp_path)

"""Every package in the source tree is installed: the setuptools list is explicit (plugins/ and
tasks/ install under prefixed names), so a new subpackage must be added to it."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_saebench_subpackage_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "saebench").rglob("__init__.py")
    }
    missing = found - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert {"saebench_plugins", "saebench_tasks"} <= listed
    assert setuptools["package-dir"]["saebench_plugins"] == "plugins"
    assert setuptools["package-dir"]["saebench_tasks"] == "tasks"

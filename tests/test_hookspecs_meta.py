"""Meta-tests: every hook is documented (one line) and exercised by the test suite."""

import inspect
from pathlib import Path

from saebench import hookspecs

HOOKS = [
    name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, "saebench_spec")
]


def test_hooks_exist():
    assert set(HOOKS) == {
        "register_methods",
        "register_tasks",
        "register_models",
        "register_commands",
    }


def test_every_hook_has_a_one_line_docstring():
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and "\n" not in doc.strip(), f"hook {name} needs a one-line docstring"


def test_every_hook_is_documented_in_the_plugin_guide():
    guide = (Path(__file__).parent.parent / "docs" / "writing-plugins.md").read_text()
    for name in HOOKS:
        assert name in guide, f"docs/writing-plugins.md does not document hook {name}"


def test_every_hook_is_exercised_by_a_test():
    tests_dir = Path(__file__).parent
    other_tests = "".join(
        p.read_text() for p in tests_dir.glob("test_*.py") if p.name != Path(__file__).name
    )
    for name in HOOKS:
        assert name in other_tests, f"no test exercises hook {name}"

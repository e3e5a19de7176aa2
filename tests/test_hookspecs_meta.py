"""Meta-tests, as datasette does them: every hook is documented, has a docstring and a test.

For each hookspec in saebench/hookspecs.py:

* docs/writing-plugins.md has a heading with the hook's exact signature, built from
  `inspect.signature` (e.g. `### register_methods(register)`), so renaming a hook or an
  argument without updating the guide fails;
* a test function named `test_hook_<name>` (or `test_hook_<name>_...`) exists in tests/;
* the hookspec has a docstring whose first line is a one-line summary.
"""

import ast
import inspect
import re
from pathlib import Path

import pytest

from saebench import hookspecs, plugins

TESTS_DIR = Path(__file__).parent
GUIDE = TESTS_DIR.parent / "docs" / "writing-plugins.md"

HOOKS = sorted(
    name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, "saebench_spec")
)


def _signature(name: str) -> str:
    """`register_methods(register)`: the hook's name and argument names, without annotations."""
    parameters = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(parameters)})"


@pytest.fixture(scope="module")
def guide_headings() -> list[str]:
    """Every Markdown heading of the plugin guide, with backticks removed (fenced code skipped)."""
    headings, in_fence = [], False
    for line in GUIDE.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and re.match(r"#{1,6} ", line):
            headings.append(line.lstrip("#").strip().replace("`", ""))
    return headings


@pytest.fixture(scope="module")
def hook_test_names() -> set[str]:
    """Names of every test function defined in tests/ (module level or inside a class)."""
    names = set()
    for path in TESTS_DIR.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


def test_hookspecs_are_the_plugin_managers_hooks():
    assert HOOKS, "no hookspecs found in saebench/hookspecs.py"
    assert set(HOOKS) == {name for name in vars(plugins.pm.hook) if not name.startswith("_")}


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_are_documented(hook, guide_headings):
    signature = _signature(hook)
    assert any(signature in heading for heading in guide_headings), (
        f"docs/writing-plugins.md needs a heading with the hook's exact signature, e.g. "
        f"'### `{signature}`' (headings found: {guide_headings})"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_tests(hook, hook_test_names):
    prefix = f"test_hook_{hook}"
    assert any(name == prefix or name.startswith(prefix + "_") for name in hook_test_names), (
        f"no test named {prefix} (or {prefix}_...) in tests/: add one that exercises the hook "
        f"through the plugin manager"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_have_docstrings(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc, f"hookspec {hook} needs a docstring"
    summary = doc.splitlines()[0].strip()
    assert summary.endswith("."), f"hookspec {hook}: start the docstring with a one-line summary"

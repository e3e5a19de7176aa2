"""The worked third-party example (examples/saebench-example-plugin), pip-installed by CI,
registers through the `saebench` entry-point group, shows up in `saebench list` and runs."""

import json

import pytest
from click.testing import CliRunner

pytest.importorskip(
    "saebench_example_plugin",
    reason="pip install -e ./examples/saebench-example-plugin (the README test command does)",
)


def test_example_plugin_is_listed_with_its_owner():
    from saebench.cli import cli

    result = CliRunner().invoke(cli, ["list"])
    line = next(x for x in result.output.splitlines() if x.strip().startswith("l1_unit_decoder"))
    assert line.rstrip().endswith("[l1_unit_decoder]")  # the entry-point plugin that owns it
    plugins = json.loads(CliRunner().invoke(cli, ["plugins"]).output)
    entry = next(p for p in plugins if p["name"] == "l1_unit_decoder")
    assert entry["hooks"] == ["register_methods"] and entry["version"]


def test_example_plugin_runs_in_saebench_run(tmp_path):
    from saebench.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--methods",
            "l1_unit_decoder",
            "--tasks",
            "frontier",
            "--preset",
            "smoke",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    cells = json.loads((tmp_path / "run" / "run.json").read_text())["cells"]
    assert cells and all(c["status"] == "ok" for c in cells)


def test_env_var_can_exclude_the_example(monkeypatch):
    from saebench import plugins

    monkeypatch.setenv(plugins.LOAD_ENV, "")
    monkeypatch.setattr(plugins, "_loaded", False)
    registered = [
        p for p in plugins.pm.get_plugins() if plugins.pm.get_name(p) == "l1_unit_decoder"
    ]
    for plugin in registered:
        plugins.pm.unregister(plugin)
    try:
        assert "l1_unit_decoder" not in plugins.get_methods()
    finally:
        monkeypatch.delenv(plugins.LOAD_ENV)
        monkeypatch.setattr(plugins, "_loaded", False)
        plugins.load_plugins()
    assert "l1_unit_decoder" in plugins.get_methods()

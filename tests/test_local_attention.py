"""Local attention in the toy model's first layer (each token sees itself, the previous token
and BOS): the mask, and that a booted, saved and reloaded model keeps it."""

import json

import pytest
import torch

from saebench.toyworld.model import (
    MODEL_CONFIG_LOCAL_LAYER0,
    MODEL_CONFIG_V2,
    boot,
    load_checkpoint,
    local_attention_mask,
    save_checkpoint,
)
from saebench.toyworld.tokenizer import build_tokenizer
from saebench.toyworld.world_v3 import WorldV3

SMALL = dict(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=16)


@pytest.mark.parametrize("window", [1, 2, 3, 5])
def test_local_mask_matches_a_loop_over_query_and_key(window):
    n = 9
    mask = local_attention_mask(n, window)
    for query in range(n):
        for key in range(n):
            visible = key <= query and (query - key < window or key == 0)
            assert bool(mask[query, key]) == (not visible), (query, key)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(WorldV3(seed=0).vocabulary, tmp_path_factory.mktemp("tok") / "t")


def small_bridge(tokenizer, config):
    return boot(dict(config, **SMALL, d_vocab=len(tokenizer), seed=0), tokenizer)


def resid_change(bridge, position: int, hook: str) -> torch.Tensor:
    """Per position, how much `hook` moves when the token at `position` is changed."""
    tokens = torch.randint(5, 40, (1, 12), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[0, position] = 41
    _, a = bridge.run_with_cache(tokens)
    _, b = bridge.run_with_cache(changed)
    return (a[hook][0] - b[hook][0]).abs().sum(-1)


def test_after_a_local_first_layer_a_token_reaches_only_itself_and_the_next(tokenizer):
    bridge = small_bridge(tokenizer, MODEL_CONFIG_LOCAL_LAYER0)
    change = resid_change(bridge, 5, "blocks.1.hook_resid_pre")
    assert change[5] > 0 and change[6] > 0
    assert torch.all(change[:5] == 0) and torch.all(change[7:] == 0)
    # the second layer is global again: the change reaches every later position
    assert torch.all(resid_change(bridge, 5, "blocks.2.hook_resid_pre")[5:] > 0)


def test_a_global_first_layer_carries_the_change_to_every_later_token(tokenizer):
    change = resid_change(small_bridge(tokenizer, MODEL_CONFIG_V2), 5, "blocks.1.hook_resid_pre")
    assert torch.all(change[5:] > 0)


def test_the_local_mask_survives_save_and_load(tokenizer, tmp_path):
    bridge = small_bridge(tokenizer, MODEL_CONFIG_LOCAL_LAYER0)
    save_checkpoint(bridge, tokenizer, tmp_path / "ck", {"note": "test"})
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["local_attention_layers"] == [0] and config["local_attention_window"] == 2
    loaded, *_ = load_checkpoint(tmp_path / "ck")
    change = resid_change(loaded, 5, "blocks.1.hook_resid_pre")
    assert torch.all(change[7:] == 0) and change[6] > 0


def test_a_window_below_one_is_refused(tokenizer):
    with pytest.raises(ValueError, match="local_attention_window"):
        small_bridge(tokenizer, dict(MODEL_CONFIG_LOCAL_LAYER0, local_attention_window=0))


def test_a_config_that_disagrees_with_the_saved_mask_is_refused(tokenizer, tmp_path):
    from saebench.errors import ConfigError

    save_checkpoint(small_bridge(tokenizer, MODEL_CONFIG_LOCAL_LAYER0), tokenizer, tmp_path, {})
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    del config["local_attention_layers"], config["local_attention_window"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="local_attention_layers"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("layers", [[4], [-1]])
def test_a_local_layer_outside_the_model_is_refused(tokenizer, layers):
    from saebench.errors import ConfigError

    with pytest.raises(ConfigError, match="0 to n_layers - 1"):
        small_bridge(tokenizer, dict(MODEL_CONFIG_LOCAL_LAYER0, local_attention_layers=layers))


@pytest.mark.parametrize("world_version", [3, 4])
def test_training_with_a_local_first_layer_records_how_to_reproduce_it(tmp_path, world_version):
    from saebench.toyworld import load_world
    from saebench.toyworld.train import train_and_save_v2

    out = tmp_path / f"v{world_version}local"
    record = train_and_save_v2(
        out,
        evaluate=False,
        log=lambda _: None,
        calendar_steps=0,
        world_version=world_version,
        local_layer0=True,
        steps=1,
        batch_size=2,
    )
    assert record["model_config"]["local_attention_layers"] == [0]
    assert record["command"] == (
        f"saebench world train --version {world_version} --steps 1 --batch-size 2 "
        f"--calendar-steps 0 --out {out} --local-layer0"
    )
    assert load_world(record).version == world_version  # `--model toyworld:DIR` builds it
    # Nothing measured, so no hook was chosen by evidence: blocks.1, and the record says why.
    assert record["default_hook"] == "blocks.1.hook_resid_pre"
    expected = "no site checks measured" if world_version == 4 else "the v2/v3 hook"
    assert expected in record["default_hook_rule"]
    loaded, *_ = load_checkpoint(out)
    assert loaded.cfg.local_attention_layers == [0]


@pytest.mark.parametrize("version", ["2", "3", "4"])
def test_the_cli_passes_the_flag_to_the_v2_recipe(monkeypatch, tmp_path, version):
    from click.testing import CliRunner

    import saebench.toyworld.train as train
    from saebench.cli import cli

    seen = {}
    monkeypatch.setattr(train, "train_and_save_v2", lambda out, **kw: seen.update(kw) or {})
    args = ["world", "train", "--version", version, "--local-layer0", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen["local_layer0"] is True and seen["world_version"] == int(version)


def test_the_activation_cache_tells_a_local_model_from_a_global_one(tokenizer):
    from saebench.harvest import weights_fingerprint

    local = small_bridge(tokenizer, MODEL_CONFIG_LOCAL_LAYER0)
    same_weights = small_bridge(tokenizer, MODEL_CONFIG_V2)  # same seed, same weights
    assert weights_fingerprint(local) != weights_fingerprint(same_weights)
    assert weights_fingerprint(same_weights) == weights_fingerprint(
        small_bridge(tokenizer, MODEL_CONFIG_V2)
    )

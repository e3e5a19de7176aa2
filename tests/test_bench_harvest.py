"""pytest-benchmark of activation harvesting throughput on the toy model (reported, not asserted)."""

import pytest
import torch

from saebench.harvest import activations_at, pack_texts, real_token_mask

pytest.importorskip("pytest_benchmark")


def test_harvest_throughput(benchmark, toy_handle):
    texts = toy_handle.corpus("train", 200, 0)
    tokens, in_row = pack_texts(toy_handle.tokenizer, texts, toy_handle.context_size)
    mask = real_token_mask(tokens, in_row, toy_handle.special_token_ids)
    tokens, mask = tokens[:32], mask[:32]

    def harvest_batch():
        return torch.cat(
            list(
                activations_at(
                    toy_handle, toy_handle.default_hook, tokens, mask, "cpu", batch_size=32
                )
            )
        )

    acts = benchmark(harvest_batch)
    benchmark.extra_info["tokens_per_call"] = int(mask.sum())
    assert acts.shape == (int(mask.sum()), 128) and torch.isfinite(acts).all()

"""The batched patching helpers give the same numbers as one-at-a-time patched runs.

patched_final_logits skips prompts a patch leaves unchanged and runs repeated patches once;
run_patched pads tiny batches so a prompt's logits do not depend on its batch. These tests pin
both against the plain per-prompt path: bit for bit on the fake bridge, and on the real toy model
to float32 rounding, since under the suite's portable numerics (MKL's CBWR=COMPATIBLE branch) a
prompt's logits depend in the last bits on the rows beside it.
"""

import pytest
import torch
from doubles.fake_world import HOOK, FakeWorldBridge

from saebench.interventions import (
    best_latent_f1,
    distinct_patches,
    patched_final_logits,
    replace_with,
    run_patched,
    tokenize,
)

IOI_PROMPTS = [
    "when mary and john went to the store , john gave a drink to",
    "when tom and mary went to the park , mary gave a ball to",
    "when john and tom went to the store , tom gave a drink to",
]


@pytest.fixture(scope="module")
def fake():
    from saebench.toyworld import load_world
    from saebench.toyworld.model import CHECKPOINT_DIR
    from saebench.toyworld.tokenizer import load_tokenizer

    return FakeWorldBridge(load_world(), load_tokenizer(CHECKPOINT_DIR / "tokenizer"))


def mixed_patches(acts: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """New activations for `acts`: some rows unchanged, some moved, one a repeat of another."""
    generator = torch.Generator().manual_seed(seed)
    new = acts.clone()
    moved = torch.arange(len(acts)) % 3 != 0
    new[moved] += torch.randn(int(moved.sum()), acts.shape[1], generator=generator)
    return new


def test_patched_final_logits_equals_patching_every_prompt(fake):
    # Each prompt twice: the repeats get the same patch (run once) or another one.
    tokens = tokenize(fake, IOI_PROMPTS * 2)
    positions = [len(t) - 1 for t in tokens]
    clean_acts, clean_logits = run_patched(fake, HOOK, tokens, positions)
    new = mixed_patches(clean_acts)
    new[len(IOI_PROMPTS) + 1] = new[1]  # the same prompt, the same patch
    every = run_patched(fake, HOOK, tokens, positions, replace_with(new))[1]
    fast = patched_final_logits(fake, HOOK, tokens, positions, new, clean_acts, clean_logits)
    assert torch.equal(fast, every)


def test_patched_final_logits_runs_only_the_moved_distinct_prompts(fake, monkeypatch):
    import saebench.interventions as interventions

    tokens = tokenize(fake, IOI_PROMPTS * 2)
    positions = [len(t) - 1 for t in tokens]
    clean_acts, clean_logits = run_patched(fake, HOOK, tokens, positions)
    new = clean_acts.clone()
    new[0] += 1.0
    new[len(IOI_PROMPTS)] = new[0]  # prompt 0 again, same patch: one run serves both
    runs = []
    real = interventions.run_patched

    def counting(bridge, hook, token_lists, *args, **kwargs):
        runs.append(len(token_lists))
        return real(bridge, hook, token_lists, *args, **kwargs)

    monkeypatch.setattr(interventions, "run_patched", counting)
    fast = patched_final_logits(fake, HOOK, tokens, positions, new, clean_acts, clean_logits)
    assert runs == [1]
    unchanged = [i for i in range(len(tokens)) if i not in (0, len(IOI_PROMPTS))]
    assert torch.equal(fast[unchanged], clean_logits[unchanged])


def test_distinct_patches_compares_bits_not_values():
    tokens = [torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor([3])]
    acts = torch.tensor([[0.0, 1.0], [0.0, 1.0], [-0.0, 1.0], [0.0, 1.0]])
    first, copy_of = distinct_patches(tokens, [1, 1, 1, 0], acts)
    # rows 0 and 1 are one patch; -0.0 is another bit pattern; row 3 is another prompt
    assert first == [0, 2, 3]
    assert copy_of.tolist() == [0, 0, 1, 2]


def test_best_latent_f1_with_a_label_matrix_equals_one_label_at_a_time():
    generator = torch.Generator().manual_seed(0)
    active = torch.rand(200, 30, generator=generator) > 0.7
    labels = torch.rand(200, 5, generator=generator) > 0.6
    labels[:, 4] = False  # a value with no positives
    precision, recall, f1 = best_latent_f1(active, labels)
    for j in range(labels.shape[1]):
        one = best_latent_f1(active, labels[:, j])
        for batched, single in zip((precision, recall, f1), one):
            assert torch.equal(batched[j], single)


@pytest.mark.slow
def test_on_the_toy_model_a_lone_prompt_gets_its_batched_logits(toy_handle):
    bridge, hook = toy_handle.bridge, toy_handle.default_hook
    tokens = tokenize(bridge, ["when mary and john went to the store , john gave a drink to"] * 8)
    positions = [len(t) - 1 for t in tokens]
    acts, batched = run_patched(bridge, hook, tokens, positions)
    lone_acts, lone = run_patched(bridge, hook, tokens[:1], positions[:1])
    assert torch.equal(lone, batched[:1]) and torch.equal(lone_acts, acts[:1])


@pytest.mark.slow
def test_on_the_toy_model_patched_final_logits_equals_patching_every_prompt(toy_handle):
    bridge, hook = toy_handle.bridge, toy_handle.default_hook
    world = toy_handle.world
    texts = [
        t.format(e=c["city"]) for c in world.cities[:6] for t in world.fact_templates["country"]
    ]
    tokens = tokenize(bridge, texts + IOI_PROMPTS)  # several lengths, some batches tiny
    positions = [len(t) - 1 for t in tokens]
    clean_acts, clean_logits = run_patched(bridge, hook, tokens, positions)
    new = mixed_patches(clean_acts)
    every = run_patched(bridge, hook, tokens, positions, replace_with(new))[1]
    fast = patched_final_logits(bridge, hook, tokens, positions, new, clean_acts, clean_logits)
    torch.testing.assert_close(fast, every, rtol=1e-5, atol=1e-5)
    unmoved = (new == clean_acts).all(dim=1)
    assert unmoved.any() and torch.equal(fast[unmoved], clean_logits[unmoved])  # not rerun
    # Prompt order survives the grouping by length.
    for i in (0, len(texts), len(tokens) - 1):
        alone = run_patched(bridge, hook, tokens[i : i + 1], positions[i : i + 1])[1]
        torch.testing.assert_close(alone[0], clean_logits[i], rtol=1e-5, atol=1e-5)

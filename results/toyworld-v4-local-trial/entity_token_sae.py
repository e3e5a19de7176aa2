"""Diagnostic: TopK SAEs trained only on last-entity-token activations (blocks.1, fact prompts).
Are their latents attribute-level, syllable-level or city-level? For each live latent, the
η² of its activation by the best attribute (or syllable) over its η² by city; a ratio > 0.8
counts as attribute- (syllable-) level, as ravel_attribute_latent_share does.
Usage: python entity_token_sae.py CHECKPOINT_DIR"""

import sys

import numpy as np
import torch
from entity_token_variance import HOOK, eta2

from saebench.interventions import run_patched, tokenize
from saebench.toyworld import load_world
from saebench.toyworld.model import load_checkpoint
from saebench_tasks.ground_truth.units import last_word_of

SIZES = ((1024, 8), (256, 8), (64, 8), (32, 4))  # (latents, k)
STEPS, BATCH, LR = 4000, 256, 1e-3


def entity_activations(directory: str) -> tuple[torch.Tensor, list[str], dict]:
    bridge, _, _, record = load_checkpoint(directory)
    world = load_world(record)
    examples = world.generate("facts", 12000, seed=21)
    positions = [last_word_of(e.prompt.split(), e.labels["entity"].split()) + 1 for e in examples]
    acts, _ = run_patched(bridge, HOOK, tokenize(bridge, [e.prompt for e in examples]), positions)
    x = acts.float() - acts.float().mean(0)
    x = x / x.norm(dim=1).mean() * x.shape[1] ** 0.5
    return x, [e.labels["entity"] for e in examples], {"world": world}


def train_topk(x: torch.Tensor, d_sae: int, k: int) -> tuple[torch.Tensor, float]:
    """(codes [n, d_sae], FVU) of a plain TopK SAE (unit-norm decoder rows, tied init)."""
    init = torch.randn(d_sae, x.shape[1]) / x.shape[1] ** 0.5
    encoder = torch.nn.Linear(x.shape[1], d_sae)
    encoder.weight.data = init.clone()
    decoder = torch.nn.Parameter(init.clone())
    bias = torch.nn.Parameter(torch.zeros(x.shape[1]))
    optimizer = torch.optim.Adam([*encoder.parameters(), decoder, bias], lr=LR)

    def forward(batch):
        pre = torch.relu(encoder(batch - bias))
        top = pre.topk(k, dim=1)
        codes = torch.zeros_like(pre).scatter(1, top.indices, top.values)
        return codes, codes @ (decoder / decoder.norm(dim=1, keepdim=True)) + bias

    for _ in range(STEPS):
        batch = x[torch.randint(0, len(x), (BATCH,))]
        loss = ((forward(batch)[1] - batch) ** 2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        codes, reconstruction = forward(x)
    return codes, float(((reconstruction - x) ** 2).sum() / (x**2).sum())


def main(directory: str) -> None:
    torch.manual_seed(0)
    x, cities, extra = entity_activations(directory)
    world = extra["world"]
    table = {c["city"]: c for c in world.cities}
    by_attribute = {a: [table[c][a] for c in cities] for a in world.attributes}
    by_syllable = {i: [c.split()[i] for c in cities] for i in (0, 1)}
    for d_sae, k in SIZES:
        codes, fvu = train_topk(x, d_sae, k)
        live = [j for j in range(d_sae) if (codes[:, j] > 0).float().mean() > 0.002]
        attribute, syllable, firing = [], [], []
        for j in live:
            v = codes[:, j].numpy().astype(float)
            city = eta2(v[:, None], cities)
            attribute.append(max(eta2(v[:, None], lab) for lab in by_attribute.values()) / city)
            syllable.append(max(eta2(v[:, None], lab) for lab in by_syllable.values()) / city)
            firing.append(len({c for c, a in zip(cities, v) if a > 0}))
        print(
            f"latents {d_sae} k {k}: fvu {fvu:.3f}, live {len(live)}, "
            f"attribute-level {np.mean(np.array(attribute) > 0.8):.3f} "
            f"(median ratio {np.median(attribute):.2f}), "
            f"syllable-level {np.mean(np.array(syllable) > 0.8):.3f} "
            f"(median ratio {np.median(syllable):.2f}), "
            f"median cities a latent fires on {np.median(firing):.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1])

"""What an SAE's latents at the last entity token encode: one entity, or one attribute?

RAVEL can only credit a dictionary whose latents carry an attribute apart from the entity. With
few entities a wide SAE can instead keep a latent per entity (a lookup table): copying such a
latent from the source moves every attribute at once, and no mask isolates one. These two
descriptive numbers say which kind of dictionary a cell scored, so a random-level disentangle
score can be read as "the latents are entity-level" rather than "the task is broken".

For a latent's activation over the training prompts, the correlation ratio
(`saebench.interventions.separation_scores`) η²(labels) = Σ_groups n_g (mean_g − mean)² / Σ (value − mean)² is the share of its variance that
the labels explain. An attribute is a function of the entity, so η²(attribute) ≤ η²(entity), with
equality exactly when the latent's entity means depend on the attribute alone.
"""

from __future__ import annotations

import torch

from saebench.interventions import separation_scores

LIVE_RATE = 0.01  # a latent counts when it fires on more than this share of prompts
ATTRIBUTE_LEVEL = 0.8  # η²(attribute) / η²(entity) at which a latent counts as attribute-level
# Only attributes with at most this many values per entity count: one that nearly names the
# entity (v1's 38 countries for 62 cities) explains any latent's variation, lookup table or not.
COARSE = 0.5
# A latent whose variation is mostly template or context (η²(city) below this) is not judged
# attribute-level, whatever its ratio: the ratio of two near-zero shares is rounding.
ENTITY_DEPENDENT = 0.1
HALF = 0.5  # an entity "drives" a latent when its mean activation is over half the top entity's


def group_index(labels: list) -> tuple[torch.Tensor, int]:
    names = {label: i for i, label in enumerate(sorted(set(labels), key=str))}
    return torch.tensor([names[label] for label in labels]), len(names)


def entity_means(values: torch.Tensor, entities: list) -> torch.Tensor:
    index, n_groups = group_index(entities)
    counts = torch.bincount(index, minlength=n_groups).double()
    sums = torch.zeros(n_groups, values.shape[1], dtype=torch.float64)
    return sums.index_add_(0, index, values.double()) / counts[:, None]


def latent_specificity(
    codes: torch.Tensor, entities: list, attributes: dict[str, list]
) -> dict[str, float]:
    """Over the live latents of codes [n_prompts, d_sae]: the median number of entities that
    drive a latent, and the share of latents whose variation is (nearly) all one coarse
    attribute's. NaN where undefined: no live latent, or (for the share) no coarse attribute."""
    live = (codes != 0).double().mean(0) > LIVE_RATE
    if not bool(live.any()):
        return {"entities_per_latent": float("nan"), "attribute_latent_share": float("nan")}
    codes = codes[:, live]
    magnitude = entity_means(codes, entities).abs()
    driven = (magnitude > HALF * magnitude.max(0).values).sum(0).double()
    by_entity = separation_scores(codes, entities)
    n_entities = len(set(entities))
    coarse = [labels for labels in attributes.values() if len(set(labels)) <= n_entities * COARSE]
    if not coarse:
        return {
            "entities_per_latent": float(driven.median()),
            "attribute_latent_share": float("nan"),
        }
    ratios = torch.stack([separation_scores(codes, labels) for labels in coarse])
    best = (ratios / by_entity.clamp_min(1e-12)).max(0).values
    attribute_level = (best > ATTRIBUTE_LEVEL) & (by_entity > ENTITY_DEPENDENT)
    return {
        "entities_per_latent": float(driven.median()),
        "attribute_latent_share": float(attribute_level.double().mean()),
    }

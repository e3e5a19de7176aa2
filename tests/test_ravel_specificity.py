"""tasks/ravel/specificity.py on planted entity- and attribute-level codes (η² itself,
`separation_scores`, is checked by hand in test_ravel.py)."""

import math

import torch

from saebench_tasks.ravel.specificity import latent_specificity


def world(n_cities=12, repeats=5):
    """Cities with two independent attributes (country: 3 values, climate: 4 values)."""
    cities = [c for c in range(n_cities) for _ in range(repeats)]
    country = [c % 3 for c in cities]
    climate = [(c // 3) % 4 for c in cities]
    return cities, {"country": country, "climate": climate}


def test_a_latent_per_city_is_entity_level():
    cities, attributes = world()
    codes = torch.zeros(len(cities), 12)
    codes[torch.arange(len(cities)), torch.tensor(cities)] = 1.0 + 0.1 * torch.rand(len(cities))
    found = latent_specificity(codes, cities, attributes)
    assert found["entities_per_latent"] == 1.0
    assert found["attribute_latent_share"] == 0.0


def test_a_latent_per_attribute_value_is_attribute_level():
    cities, attributes = world()
    blocks = []
    for labels in attributes.values():
        values = torch.tensor(labels)
        block = torch.zeros(len(cities), int(values.max()) + 1)
        block[torch.arange(len(cities)), values] = 1.0
        blocks.append(block)
    codes = torch.cat(blocks, 1) * (1.0 + 0.01 * torch.rand(len(cities), 1))
    found = latent_specificity(codes, cities, attributes)
    assert found["attribute_latent_share"] == 1.0
    assert found["entities_per_latent"] == 3.0  # each climate value is 3 cities, country 4


def test_dead_latents_are_left_out_and_an_empty_code_gives_nan():
    cities, attributes = world()
    codes = torch.zeros(len(cities), 12)
    found = latent_specificity(codes, cities, attributes)
    assert all(v != v for v in found.values())
    codes[:, 0] = torch.tensor([float(c == 0) for c in cities])  # one live latent, city 0
    assert latent_specificity(codes, cities, attributes)["entities_per_latent"] == 1.0


def test_an_attribute_that_nearly_names_the_city_does_not_count():
    # 12 cities, 12 "postcodes": any latent is a function of the postcode, lookup or not.
    cities, attributes = world()
    codes = torch.zeros(len(cities), 12)
    codes[torch.arange(len(cities)), torch.tensor(cities)] = 1.0
    found = latent_specificity(codes, cities, {"postcode": list(cities)})
    assert found["entities_per_latent"] == 1.0
    assert math.isnan(found["attribute_latent_share"])
    mixed = latent_specificity(codes, cities, {"postcode": list(cities), **attributes})
    assert mixed["attribute_latent_share"] == 0.0  # judged on country and climate only


def test_a_latent_that_follows_the_template_not_the_city_is_not_attribute_level():
    cities, attributes = world()
    template = torch.tensor([i % 5 for i in range(len(cities))], dtype=torch.float32)
    codes = (template + 1.0)[:, None]  # every city has the same mean: η²(city) ≈ 0
    assert latent_specificity(codes, cities, attributes)["attribute_latent_share"] == 0.0

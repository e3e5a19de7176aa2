"""Baseline: a random unit-norm dictionary with a sensible encoder.

Decoder rows are random unit vectors; the encoder is the tied transpose with TopK selection
(knob k), centred at the data mean, and one least-squares scale on the decoder so the
reconstruction is as good as such a dictionary can be. A task that cannot tell a trained SAE
from this is broken.
"""

import torch

from saebench.architectures import TopKSAE, check_k
from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec


class RandomBaseline:
    def __init__(self, d_in: int, d_sae: int, k: float):
        # Checked here, at build time: the TopKSAE is only made in fit(), after harvesting.
        self.d_in, self.d_sae, self.k = d_in, d_sae, check_k(k, d_sae, "random")

    def fit(self, sample: torch.Tensor) -> TopKSAE:
        sae = TopKSAE(self.d_in, self.d_sae, k=self.k, baseline="random")
        # A salted generator: seeding with the bare run seed would reproduce the directions of
        # anything else seeded the same way (e.g. a synthetic stream's true dictionary).
        seed = int(torch.initial_seed()) % (2**31) + 7_919
        directions = torch.randn(
            self.d_sae, self.d_in, generator=torch.Generator().manual_seed(seed)
        )
        directions /= directions.norm(dim=1, keepdim=True)
        with torch.no_grad():
            sae.W_dec.copy_(directions)
            sae.W_enc.copy_(directions.T)
            sae.b_dec.copy_(sample.mean(0))
            centred = sample - sae.b_dec
            reconstruction = sae.encode(sample) @ directions
            scale = (centred * reconstruction).sum() / reconstruction.pow(2).sum().clamp_min(1e-12)
            sae.W_dec.mul_(scale)
        return sae


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="random",
            description="Baseline: random unit-norm dictionary, tied TopK encoder, fitted scale",
            knob="k",
            knob_is_integer=True,
            knob_min=1,
            build=lambda d_in, d_sae, knob: RandomBaseline(d_in, d_sae, knob),
            sweeps={
                "smoke": [16],
                "default": [4, 8, 16, 32, 64],
                "full": [4, 8, 16, 32, 64, 128, 256],
            },
            trainable=False,
            calibration=True,
        )
    )

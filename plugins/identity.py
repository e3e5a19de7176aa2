"""Baseline: the residual (neuron) basis as a dictionary.

d_sae = 2·d_in latents ±e_i, so ReLU keeps both signs: f = ReLU([x, −x]), x̂ = f⁺ − f⁻ = x.
Perfect reconstruction at L0 ≈ d_in: a calibration point for every task, not a competitor.
"""

import torch

from saebench.hookspecs import hookimpl
from saebench.sae import SAE, signed_basis_sae
from saebench.specs import MethodSpec


class IdentityBaseline:
    def __init__(self, d_in):
        self.d_in = d_in

    def fit(self, sample: torch.Tensor) -> SAE:
        return signed_basis_sae(torch.eye(self.d_in), torch.zeros(self.d_in), "identity")


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="identity",
            description="Baseline: the residual basis as ±e_i latents (perfect reconstruction, dense)",
            knob="none",
            build=lambda d_in, d_sae, knob: IdentityBaseline(d_in),
            sweeps={"smoke": [0], "default": [0], "full": [0]},
            trainable=False,
            calibration=True,
        )
    )

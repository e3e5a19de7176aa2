"""Baseline: principal directions of the activations as ±pairs of latents, centred at the mean."""

import torch

from saebench.hookspecs import hookimpl
from saebench.sae import signed_basis_sae
from saebench.specs import MethodSpec


class PCABaseline:
    def __init__(self, d_in):
        self.d_in = d_in

    def fit(self, sample: torch.Tensor):
        mean = sample.mean(0)
        # Rows of Vh are the principal directions, in order of explained variance.
        _, _, vh = torch.linalg.svd((sample - mean).double(), full_matrices=False)
        return signed_basis_sae(vh.float(), mean, "pca")


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="pca",
            description="Baseline: principal components as ±latents (perfect reconstruction, dense)",
            knob="none",
            build=lambda d_in, d_sae, knob: PCABaseline(d_in),
            sweeps={"smoke": [0], "default": [0], "full": [0]},
            trainable=False,
            calibration=True,
        )
    )

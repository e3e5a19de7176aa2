"""Baseline: the principal directions of the activations as ±latents, TopK by |projection|.

Latents are ±v_i for every principal direction v_i (d_sae = 2·d_in), centred at the data mean;
the encoder keeps the k largest ReLU([p, −p]), which is the k components with the largest
|projection| on each token. So PCA sweeps k like TopK and has an L0 curve to compare against:
at matched L0 it is the best linear, non-learned, data-aware dictionary (k = d_in is exact).
"""

import torch

from saebench.architectures import TopKSAE
from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec


class PCABaseline:
    def __init__(self, d_in: int, k: float):
        if int(k) > d_in:
            raise ValueError(
                f"pca: k={k} exceeds d_in={d_in} (at most one of ±v_i fires per component); "
                f"pass --sweep pca=k1,k2 with values <= {d_in}"
            )
        self.d_in, self.k = d_in, int(k)

    def fit(self, sample: torch.Tensor) -> TopKSAE:
        mean = sample.mean(0)
        # Rows of Vh are the principal directions, in order of explained variance.
        _, _, vh = torch.linalg.svd((sample - mean).double(), full_matrices=False)
        directions = torch.cat([vh.float(), -vh.float()])
        sae = TopKSAE(self.d_in, 2 * self.d_in, k=self.k, apply_b_dec_to_input=True, baseline="pca")
        with torch.no_grad():
            sae.W_dec.copy_(directions)
            sae.W_enc.copy_(directions.T)
            sae.b_dec.copy_(mean)
        return sae


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="pca",
            description="Baseline: principal components as ±latents, top-k by |projection|",
            knob="k",
            knob_is_integer=True,
            knob_min=1,
            build=lambda d_in, d_sae, knob: PCABaseline(d_in, knob),
            sweeps={"smoke": [16], "default": [4, 8, 16, 32, 64], "full": [4, 8, 16, 32, 64, 128]},
            trainable=False,
            calibration=True,
        )
    )

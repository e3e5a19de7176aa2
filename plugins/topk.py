"""TopK SAE (Gao et al. 2024).

z = (x − b_dec) W_enc + b_enc; f = ReLU(TopK_k(z)); L = ‖x − x̂‖² + α·AuxK, α = 1/32, where
AuxK = ‖e − ê‖² / ‖e − ē‖², e = x − x̂ (detached) and ê decodes the top-k_aux pre-activations
among dead latents only (no b_dec), k_aux = d_in/2. Unit-norm decoder with gradient
projection, tied init, geometric-median b_dec. L0 = k by construction (at most).
"""

import torch

from saebench.architectures import TopKSAE, check_k
from saebench.errors import ConfigError
from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, auxk_loss, squared_error
from saebench.specs import MethodSpec

AUXK_ALPHA = 1 / 32


class TrainableTopKSAE(TopKSAE, TrainableSAE):
    unit_norm_decoder = True

    def __init__(self, d_in, d_sae, k: int, **cfg):
        super().__init__(d_in, d_sae, k=k, **cfg)
        self.k_aux = max(1, d_in // 2)
        self.cfg.update(
            k=self.k,
            k_aux=self.k_aux,
            auxk_alpha=AUXK_ALPHA,
            decoder="unit_norm_with_gradient_projection",
        )

    def training_loss(self, x, sparsity_scale):
        z = self.pre_acts(x)
        values, indices = z.topk(self.k, dim=-1)
        f = torch.zeros_like(z).scatter(-1, indices, torch.relu(values))
        x_hat = self.decode(f)
        mse = squared_error(x, x_hat)
        aux = auxk_loss(z, (x - x_hat).detach(), self.W_dec, self.dead_mask(), self.k_aux)
        return mse + AUXK_ALPHA * aux, f, {"mse": mse.item(), "auxk": float(aux.detach())}


def build(d_in: int, d_sae: int, knob: float) -> TrainableTopKSAE:
    # d_sae = the preset's expansion × d_in, known only once the activations are harvested, so
    # k <= d_sae cannot be checked with the other flags: say here what it is made of.
    if knob > d_sae:
        raise ConfigError(
            f"topk: k={int(knob)} is more than the SAE's d_sae={d_sae} latents (the preset's "
            f"expansion × d_in = {d_sae / d_in:g} × {d_in}); pass --sweep topk=... with values "
            f"<= {d_sae}, or a preset with a larger expansion"
        )
    return TrainableTopKSAE(d_in, d_sae, k=check_k(knob, d_sae, "topk"))


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="topk",
            description="TopK SAE with AuxK dead-latent loss and unit-norm decoder (OpenAI 2024)",
            knob="k",
            build=build,
            knob_is_integer=True,
            knob_min=1,
            sweeps={"smoke": [16], "default": [8, 16, 32, 64], "full": [8, 16, 32, 64, 128, 256]},
        )
    )

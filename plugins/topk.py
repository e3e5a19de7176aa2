"""TopK SAE (Gao et al. 2024).

z = (x − b_dec) W_enc + b_enc; f = ReLU(TopK_k(z)); L = ‖x − x̂‖² + α·AuxK, α = 1/32, where
AuxK = ‖e − ê‖² / ‖e − ē‖², e = x − x̂ (detached) and ê decodes the top-k_aux pre-activations
among dead latents only (no b_dec), k_aux = d_in/2. Unit-norm decoder with gradient
projection, tied init, geometric-median b_dec. L0 = k by construction (at most).
"""

import torch

from saebench.architectures import TopKSAE
from saebench.errors import ConfigError
from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, squared_error
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

    def auxk_loss(self, z, error):
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return z.new_zeros(())
        k_aux = min(self.k_aux, n_dead)
        dead_z = z.masked_fill(~dead, float("-inf"))
        values, indices = dead_z.topk(k_aux, dim=-1)
        f_aux = torch.zeros_like(z).scatter(-1, indices, torch.relu(values))
        error_hat = f_aux @ self.W_dec
        denominator = (error - error.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        return squared_error(error, error_hat) / denominator

    def training_loss(self, x, sparsity_scale):
        z = self.pre_acts(x)
        values, indices = z.topk(self.k, dim=-1)
        f = torch.zeros_like(z).scatter(-1, indices, torch.relu(values))
        x_hat = self.decode(f)
        mse = squared_error(x, x_hat)
        aux = self.auxk_loss(z, (x - x_hat).detach())
        return mse + AUXK_ALPHA * aux, f, {"mse": mse.item(), "auxk": float(aux.detach())}


def build(d_in, d_sae, knob, options=None):
    if not 1 <= int(knob) <= d_sae:
        raise ConfigError(
            f"topk: k={knob} must be between 1 and d_sae={d_sae}; lower k "
            f"(--sweep topk=...) or raise the dictionary size"
        )
    return TrainableTopKSAE(d_in, d_sae, k=int(knob))


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

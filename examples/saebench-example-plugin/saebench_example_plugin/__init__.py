"""BatchTopK SAE (Bussmann, Leask & Nanda 2024) as a third-party saebench method plugin.

Training: z = ReLU((x − b_dec) W_enc + b_enc); keep the k·B largest entries of z over the whole
batch (B tokens), zero the rest; L = ‖x − x̂‖² + α·AuxK (dead latents, as in TopK).
Unit-norm decoder with gradient projection (the shared engine does it when unit_norm_decoder).
Inference: θ = EMA of the smallest kept activation per batch; f = z·1[z > θ] — a JumpReLU SAE
with a uniform threshold, so saved SAEs load as architecture "jumprelu" without this plugin.
"""

import torch

from saebench.architectures import JumpReLUSAE, check_k
from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, auxk_loss, squared_error
from saebench.specs import MethodSpec

AUXK_ALPHA = 1 / 32
# Weight on the old θ: short runs need a short memory, or early (larger) thresholds linger.
THRESHOLD_EMA = 0.9  # recorded in sae.cfg


class BatchTopKSAE(JumpReLUSAE, TrainableSAE):
    unit_norm_decoder = True

    def __init__(self, d_in, d_sae, k: int, **cfg):
        super().__init__(d_in, d_sae, **cfg)
        self.k = check_k(k, d_sae, "batchtopk")
        self.k_aux = max(1, d_in // 2)
        # θ is an inference statistic, not a trained parameter: keep it out of the optimiser.
        self.threshold.requires_grad_(False)
        self.threshold_initialized = False
        self.cfg.update(
            k=self.k,
            k_aux=self.k_aux,
            auxk_alpha=AUXK_ALPHA,
            threshold_ema=THRESHOLD_EMA,
            inference="jumprelu_uniform_threshold",
        )

    def batch_topk(self, z):
        """Keep the k·B largest activations of the whole batch."""
        flat = z.flatten()
        values, indices = flat.topk(min(self.k * z.shape[0], flat.numel()))
        return torch.zeros_like(flat).scatter(0, indices, values).view_as(z), values

    @torch.no_grad()
    def update_threshold(self, kept_values):
        positive = kept_values[kept_values > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min()
        if not self.threshold_initialized:
            self.threshold.fill_(smallest.item())
            self.threshold_initialized = True
        else:
            self.threshold.mul_(THRESHOLD_EMA).add_((1 - THRESHOLD_EMA) * smallest)

    def training_loss(self, x, sparsity_scale):
        z = torch.relu(self.pre_acts(x))
        f, kept = self.batch_topk(z)
        if self.training:
            self.update_threshold(kept)
        x_hat = self.decode(f)
        mse = squared_error(x, x_hat)
        dead = self.dead_mask()
        aux = auxk_loss(self.pre_acts(x), (x - x_hat).detach(), self.W_dec, dead, self.k_aux)
        return (
            mse + AUXK_ALPHA * aux,
            f,
            {"mse": mse.item(), "auxk": aux.item(), "threshold": self.threshold[0].item()},
        )


def build(d_in: int, d_sae: int, knob: float) -> BatchTopKSAE:
    return BatchTopKSAE(d_in, d_sae, k=int(knob))


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="batchtopk",
            description="BatchTopK SAE: top k·B over the batch, JumpReLU threshold at inference "
            "(example third-party plugin)",
            knob="k",
            build=build,
            knob_is_integer=True,
            knob_min=1,
            sweeps={"smoke": [16], "default": [8, 16, 32, 64], "full": [8, 16, 32, 64, 128, 256]},
        )
    )

"""Matryoshka SAE (Bussmann, Nabeshima, Karvonen & Nanda 2025, "Learning Multi-Level Features
with Matryoshka Sparse Autoencoders", arXiv:2503.17547), with BatchTopK inside.

Nested dictionaries M = {m_1 < m_2 < … < m_n = d_sae}: latent prefix 1:m_j must reconstruct x on
its own, so the early latents learn general, frequent features and the later ones add detail
without absorbing them.

Encoder (BatchTopK, Bussmann, Leask & Nanda 2024):
    z = (x − b_dec) W_enc + b_enc;  f = BatchTopK_k(ReLU(z)) — keep the k·B largest entries of
    the whole batch [B, d_sae], zero the rest (L0 = k on average over the batch).
Prefix reconstructions (the paper's x̂_m):
    x̂_j = f_{1:m_j} W_dec[1:m_j, :] + b_dec      (computed cumulatively: one full decode's cost)
Loss (the paper's eq.: a sum over m ∈ M, plus α·L_aux):
    L = Σ_j ‖x − x̂_j‖² / Var(x) + α · ‖e − ê‖² / Var(e),   α = 1/32
    with e = x − x̂_n (the full dictionary's residual, detached), ê the decode (no b_dec) of the
    top-k_aux pre-activations among dead latents only, k_aux = d_in/2 (Gao et al. 2024's AuxK,
    normalised by the residual's batch variance as in openai/sparse_autoencoder and
    dictionary_learning's MatryoshkaBatchTopKTrainer). Var(x) is the init sample's per-token total
    variance (a constant, the same normalisation the built-in `topk` uses, so the reconstruction
    and AuxK terms keep Gao et al.'s relative weight).
Decoder: unit-norm rows with gradient projection (both reference implementations); tied init
(W_enc = W_decᵀ), geometric-median b_dec, b_enc = 0 (the shared engine's defaults).
Inference (as BatchTopK): a uniform threshold θ = EMA of the smallest positive kept activation
of each training batch; f = z · 1[z > θ]. Saved as architecture "jumprelu" with θ on every
latent, so it reloads without this plugin. The prefix order is kept: latent i of the saved SAE
is latent i of the trained one, so `f[:, :m_j]` of the saved SAE is prefix j.

Choices where the public recipes differ (every one recorded in `sae.cfg`):
- Prefix sizes: m_j = d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae (doubling from 1/16), as in
  the authors' released training script (bartbussmann/matryoshka_sae main.py, group sizes
  [d/16, d/16, d/8, d/4, d/2]). dictionary_learning's demo uses other fractions; SAELens takes
  explicit widths. Rounded, at least 1, strictly increasing (duplicates dropped at small d_sae).
- Prefix losses are summed, as in the paper's formula and SAELens. Departure from the authors'
  code, which averages them (bartbussmann: the mean over the n prefixes and a b_dec-only term;
  dictionary_learning: weights 1/n): with Adam this only moves the AuxK term's relative weight.
- Reconstruction divided by the constant Var(x) (see above): departs from the paper's plain
  ‖·‖², a constant rescaling that keeps AuxK at Gao et al.'s weight under our E‖x‖ = √d scaling.
- AuxK on the full dictionary's residual (dictionary_learning, SAELens's default; SAELens's
  optional per-level AuxK is not used).
- θ EMA weight 0.9 on the old value, updated from the first step. Departure from
  dictionary_learning (0.999, from step 1000) and the authors' code (0.99 from θ = 0): the
  smoke/default presets train 94–586 steps, where a long memory leaves θ at early-training
  values. The per-batch statistic (the k·B-th largest of B·d_sae activations) is stable, so a
  short memory costs little noise. The same β as the built-in `batchtopk`.
- No k annealing (dictionary_learning's optional k_anneal_steps is off by default there too).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from saebench.architectures import JumpReLUSAE, check_k, check_k_fits
from saebench.errors import ConfigError
from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, auxk_loss, squared_error
from saebench.specs import MethodSpec
from saebench_plugins.batchtopk import batch_topk

AUXK_ALPHA = 1 / 32
PREFIX_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
THRESHOLD_EMA = 0.9  # weight on the old θ
RECIPE = {
    "auxk_alpha": AUXK_ALPHA,
    "loss": "bussmann2025: sum_j ||x - x_hat_j||^2/Var(x) + auxk_alpha * auxk_mse/Var(e)",
    "prefix_loss_reduction": "sum",
    "auxk_residual": "full_dictionary",
    "sparsity": "batchtopk: top k*B over the batch of ReLU(z)",
    "decoder": "unit_norm_with_gradient_projection",
    "threshold_ema": THRESHOLD_EMA,
    "threshold_statistic": "min positive kept activation per batch, from the first step",
    "inference": "jumprelu_uniform_threshold",
}


def prefix_sizes(d_sae: int, fractions: Sequence[float] = PREFIX_FRACTIONS) -> list[int]:
    """The nested dictionary sizes m_1 < … < m_n = d_sae for the given fractions of d_sae."""
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ConfigError(f"matryoshka: prefix fractions must be in (0, 1]; got {list(fractions)}")
    sizes = {max(1, min(d_sae, round(f * d_sae))) for f in fractions}
    return sorted(sizes | {d_sae})


class TrainableMatryoshkaSAE(JumpReLUSAE, TrainableSAE):
    """One Matryoshka BatchTopK SAE (dense). Inference is the JumpReLU it inherits."""

    unit_norm_decoder = True

    def __init__(
        self, d_in, d_sae, k: int, prefix_fractions: Sequence[float] = PREFIX_FRACTIONS, **cfg
    ):
        super().__init__(d_in, d_sae, **cfg)
        self.k = check_k(k, d_sae, "matryoshka")
        self.k_aux = max(1, d_in // 2)
        self.prefix_sizes = prefix_sizes(d_sae, prefix_fractions)
        # θ is an inference statistic, not a trained parameter: keep it out of the optimiser.
        self.threshold.requires_grad_(False)
        self.threshold_initialized = False
        self.cfg.update(
            k=self.k,
            k_aux=self.k_aux,
            prefix_fractions=[float(f) for f in prefix_fractions],
            prefix_sizes=list(self.prefix_sizes),
            **RECIPE,
        )

    def prefix_reconstructions(self, f: torch.Tensor) -> list[torch.Tensor]:
        """x̂_j = f[:, :m_j] W_dec[:m_j] + b_dec for every prefix j, built cumulatively."""
        reconstructions = []
        x_hat = self.b_dec.expand(f.shape[0], -1)
        start = 0
        for end in self.prefix_sizes:
            x_hat = x_hat + f[:, start:end] @ self.W_dec[start:end]
            reconstructions.append(x_hat)
            start = end
        return reconstructions

    @torch.no_grad()
    def update_threshold(self, kept: torch.Tensor) -> None:
        positive = kept[kept > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min().float()
        if not self.threshold_initialized:
            self.threshold.fill_(smallest.item())
            self.threshold_initialized = True
        else:
            self.threshold.mul_(THRESHOLD_EMA).add_((1 - THRESHOLD_EMA) * smallest)

    def training_loss(self, x, sparsity_scale):
        z = self.pre_acts(x)
        f, kept = batch_topk(torch.relu(z), self.k)
        if self.training:
            self.update_threshold(kept.detach())
        reconstructions = self.prefix_reconstructions(f)
        mses = [squared_error(x, x_hat) for x_hat in reconstructions]
        full = reconstructions[-1]
        aux = auxk_loss(z, (x - full).detach(), self.W_dec, self.dead_mask(), self.k_aux)
        loss = torch.stack(mses).sum() / self.input_variance + AUXK_ALPHA * aux
        return (
            loss,
            f,
            {
                "mse": mses[-1].item(),  # the full dictionary's, as every method logs
                "mse_prefix_1": mses[0].item(),
                "auxk": float(aux.detach()),
                "threshold": self.threshold[0].item(),
            },
        )


def build(d_in: int, d_sae: int, knob: float) -> TrainableMatryoshkaSAE:
    return TrainableMatryoshkaSAE(d_in, d_sae, k=check_k_fits(knob, d_in, d_sae, "matryoshka"))


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="matryoshka",
            description="Matryoshka BatchTopK SAE: nested prefix reconstruction losses, "
            "JumpReLU threshold at inference (Bussmann et al. 2025)",
            knob="k",
            build=build,
            knob_is_integer=True,
            knob_min=1,
            sweeps={"smoke": [16], "default": [8, 16, 32, 64], "full": [8, 16, 32, 64, 128, 256]},
        )
    )

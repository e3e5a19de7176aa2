"""The common SAE object every method produces and every task consumes.

Notation (the SAELens layout, so saved SAEs load there unchanged): x [.., d_in], f [.., d_sae],
W_enc [d_in, d_sae], W_dec [d_sae, d_in] (row i = decoder direction of latent i), b_enc [d_sae],
b_dec [d_in]. x_hat = f @ W_dec + b_dec. A saved/loaded SAE always works on raw (unnormalised)
activations.
"""

from __future__ import annotations

import torch
from torch import nn


class SAE(nn.Module):
    """Inference-time SAE: encode/decode. Subclasses change `encode` (gated, topk, ...)."""

    architecture = "standard"  # SAELens architecture name written to cfg.json

    def __init__(self, d_in: int, d_sae: int, apply_b_dec_to_input: bool = True, **cfg):
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.cfg = dict(cfg)  # every recipe choice; saved into cfg.json
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_acts(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Trained on x·scale; make the SAE work on raw x (x̂ comes out in raw units too)."""
        self.W_enc.mul_(scale)
        self.b_dec.div_(scale)
        self.W_dec.div_(scale)
        self.cfg["folded_input_scale"] = scale


class TrainableSAE(SAE):
    """An SAE with a training objective. The shared engine (saebench.training) drives it.

    Subclasses implement `training_loss(x, sparsity_scale) -> (loss, f, logs)` on *normalised*
    activations; `unit_norm_decoder` turns on the decoder-norm constraint (gradient projection
    before each step, renormalisation after).
    """

    unit_norm_decoder = False
    decoder_init_norm = 1.0
    tokens_since_fired: torch.Tensor  # a buffer (register_buffer in __init__)
    input_variance: torch.Tensor  # a buffer: the init sample's per-token total variance

    def __init__(self, d_in, d_sae, **cfg):
        super().__init__(d_in, d_sae, **cfg)
        # A latent is dead once it has not fired for dead_window_tokens training tokens (Gao et
        # al. 2024 use 10M). Counted in tokens, not steps, so the window does not depend on the
        # batch size; the shared engine sets the window from TrainConfig.
        self.register_buffer("tokens_since_fired", torch.zeros(d_sae, dtype=torch.long))
        self.register_buffer("input_variance", torch.ones(()), persistent=False)
        self.dead_window_tokens = 10_000_000

    def dead_mask(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.dead_window_tokens

    def record_firing(self, f: torch.Tensor) -> None:
        fired = (f > 0).any(dim=0)
        self.tokens_since_fired += f.shape[0]
        self.tokens_since_fired[fired] = 0

    def initialize(
        self,
        sample: torch.Tensor,
        init_b_dec: str = "geometric_median",
        generator: torch.Generator | None = None,
        b_dec: torch.Tensor | None = None,
    ) -> None:
        """Tied init: random decoder rows of norm `decoder_init_norm`, W_enc = W_decᵀ; b_dec from
        data (or the given `b_dec`, computed once for a whole group); `input_variance` is the
        sample's per-token total variance (the TopK recipe normalises its loss by it)."""
        with torch.no_grad():
            directions = torch.randn(self.d_sae, self.d_in, generator=generator)
            directions *= self.decoder_init_norm / directions.norm(dim=1, keepdim=True)
            self.W_dec.copy_(directions)
            self.W_enc.copy_(directions.T)
            self.b_enc.zero_()
            self.b_dec.copy_(initial_b_dec(sample, init_b_dec) if b_dec is None else b_dec)
            self.input_variance.fill_(total_variance(sample))

    def training_loss(self, x: torch.Tensor, sparsity_scale: float):
        raise NotImplementedError

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each (unit) decoder row: g -= (g·d)d."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            unit = self.W_dec / self.W_dec.norm(dim=1, keepdim=True)
            parallel = (self.W_dec.grad * unit).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * unit

    @torch.no_grad()
    def renormalize_decoder(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True))


def initial_b_dec(sample: torch.Tensor, how: str) -> torch.Tensor:
    if how == "zero":
        return torch.zeros(sample.shape[1])
    if how == "mean":
        return sample.mean(0)
    if how == "geometric_median":
        return geometric_median(sample)
    raise ValueError(f"init_b_dec must be geometric_median, mean or zero; got {how!r}")


def geometric_median(
    points: torch.Tensor, iterations: int = 100, eps: float = 1e-6
) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances."""
    points = points.double()
    median = points.mean(0)
    for _ in range(iterations):
        distances = (points - median).norm(dim=1).clamp_min(eps)
        weights = 1.0 / distances
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - median).norm() < eps * (1 + median.norm()):
            median = new
            break
        median = new
    return median.float()


def total_variance(x: torch.Tensor) -> float:
    """Per-token total variance E‖x − x̄‖² of a sample (the denominator of FVU)."""
    return float((x - x.mean(0)).pow(2).sum(-1).mean())


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-token ‖x − x̂‖², mean over the batch (never a batch-size dependent sum)."""
    return (x - x_hat).pow(2).sum(-1).mean()


def auxk_loss(
    z: torch.Tensor, error: torch.Tensor, W_dec: torch.Tensor, dead: torch.Tensor, k_aux: int
) -> torch.Tensor:
    """AuxK (Gao et al. 2024): how well the dead latents alone reconstruct the residual error.

    z: pre-activations [batch, d_sae]; error: x − x̂ [batch, d_in], detached by the caller;
    dead: bool [d_sae]. ê decodes the top-min(k_aux, #dead) pre-activations among dead latents
    (ReLU, no b_dec); the loss is ‖e − ê‖² / ‖e − ē‖² (per-token means), 0 when none is dead.
    """
    n_dead = int(dead.sum())
    if n_dead == 0:
        return z.new_zeros(())
    values, indices = z.masked_fill(~dead, float("-inf")).topk(min(k_aux, n_dead), dim=-1)
    error_hat = torch.zeros_like(z).scatter(-1, indices, torch.relu(values)) @ W_dec
    denominator = (error - error.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
    return squared_error(error, error_hat) / denominator


def signed_basis_sae(directions: torch.Tensor, center: torch.Tensor, name: str) -> SAE:
    """An SAE whose latents are ±directions (rows, orthonormal) around `center`: ReLU keeps both
    signs, so it reconstructs exactly in the span of `directions` (the identity and PCA
    baselines, and the kit's model-free test dictionary)."""
    d_in = directions.shape[1]
    sae = SAE(d_in, 2 * directions.shape[0], apply_b_dec_to_input=True, baseline=name)
    with torch.no_grad():
        both = torch.cat([directions, -directions])
        sae.W_dec.copy_(both)
        sae.W_enc.copy_(both.T)
        sae.b_dec.copy_(center)
    return sae

"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity
with JumpReLU Sparse Autoencoders", arXiv:2407.14435), trained with the paper's STEs.

Forward (the paper's encoder and decoder; no pre-encoder bias, as in Gemma Scope's released
JumpReLU SAEs, which SAELens loads with apply_b_dec_to_input=False; the paper's pseudo-code has
the b_dec subtraction only as an option):
    z = x W_enc + b_enc
    f = JumpReLU_θ(z) = z · H(z − θ),   θ_i = exp(log θ_i) > 0 per latent (a parameter, fp32)
    x̂ = f W_dec + b_dec
Loss (the paper's L0 objective, λ warmed up linearly from 0):
    L = ‖x − x̂‖² + λ · Σ_i H(z_i − θ_i)
Pseudo-derivatives (straight-through estimators with a kernel K of bandwidth ε; the paper uses
the rectangle K(u) = 1[−½ < u < ½]):
    ð/ðθ JumpReLU_θ(z) := −(θ/ε) · K((z − θ)/ε)
    ð/ðθ H(z − θ)      := −(1/ε) · K((z − θ)/ε)
    ∂/∂z JumpReLU_θ(z)  = H(z − θ)   (the ordinary derivative: no STE towards z)
    ∂/∂z H(z − θ)       = 0          (the L0 term trains θ only, as in the paper's pseudo-code)
Averaged over a batch, −(1/ε)·K((z − θ)/ε) is a kernel density estimate of the pre-activation
density at θ: the L0 gradient on θ_i is λ·p̂_i(θ_i), which is what lets a step function learn.

Units. The paper normalises activations to E‖x‖² = 1; the shared engine to E‖x‖ = √d_in
(SAELens), i.e. √d_in times larger. Every paper constant is converted, so the training problem is
the paper's up to a constant factor on the loss (Adam is invariant to it):
- θ init 0.001 and ε = 0.001 on the paper's scale → 0.001·√d_in in engine units (recorded as
  `threshold_init` / `bandwidth`, and the paper values as `*_paper_scale`);
- the knob λ is on the paper's scale (it prices one active latent against squared error measured
  with E‖x‖² = 1): the engine loss is ‖x − x̂‖² + d_in·λ·L0. So one λ means the same sparsity
  pressure at any d_in.

Recipe, every choice recorded in `sae.cfg` (→ cfg.json):
- Decoder: rows held at unit norm (gradient projection + renormalisation by the engine), as
  dictionary_learning's JumpReluTrainer (a port of the paper's recipe) does. The L0 penalty puts
  no pressure on the decoder norm, and a fixed norm keeps ε meaningful in units of z.
- Init (the paper): W_dec rows He-uniform, rescaled to unit norm; W_enc = W_decᵀ; b_enc = 0;
  b_dec = 0 (`init_b_dec` override: the paper's zero init, not the engine's geometric median);
  log θ = log(θ_init).
- Optimiser: Adam β = (0, 0.999) (the paper's β1 = 0; `recipe_overrides`). Learning rate, its
  warmup/decay, batch size and grad clipping are the engine's preset values, shared with every
  method for a fair comparison (dictionary_learning's port of the paper defaults to lr 7e-5).
- λ warmup: linear from 0 (the paper), over the engine's `sparsity_warmup_frac` of the steps
  (the paper warms it up over a fixed number of early steps of its much longer runs).
- Inference: saved as SAELens architecture "jumprelu" with `threshold` = exp(log θ), so a saved SAE
  reloads as `saebench.architectures.JumpReLUSAE` without this plugin.

Departures from the paper: the engine's shared lr schedule, batch size and λ-warmup length (see
above), and the constants' unit conversion (not a change of the objective). Not implemented: the
later variants (Anthropic's tanh penalty with a pre-activation loss; dictionary_learning's
quadratic target-L0 penalty λ(L0/L0_target − 1)²).

Training budget. λ reaches the encoder only through θ (the L0 term has no gradient to z), and Adam
moves log θ by at most about lr per step, so θ needs lr·steps ≳ ln(θ*/θ_init) ≈ 3–5 to travel
from the paper's near-zero init to where the L0 price balances the reconstruction (θ*² ≈ the
squared error a latent saves, ≈ d_in·λ). Billion-token runs at lr ~1e-4 have lr·steps in the
hundreds (e.g. 7e-5 × 2M steps ≈ 140), so there the init does not matter. Here:
- default preset (586 steps at lr 1e-2, ≈ 5.9): enough. Measured on the toy world (the cached
  default harvest of blocks.1.hook_resid_pre, 400k tokens; d_in 128, d_sae 1024, one seed, eval
  on 20k held-out tokens), λ → L0 / FVU / mean θ:
  3e-5 → 52.8 / 0.0193 / 0.024;  1e-4 → 42.8 / 0.0196 / 0.071;  2e-4 → 32.9 / 0.0205 / 0.135;
  3e-4 → 26.7 / 0.0220 / 0.195;  1e-3 → 14.0 / 0.0275 / 0.43;  3e-3 → 8.5 / 0.0340 / 0.66;
  5e-3 → 7.0 / 0.0384 / 0.75;  1e-2 → 5.5 / 0.0429 / 0.87;  1e-1 → 4.9 / 0.0613 / 1.25.
  Above λ ≈ 1e-2 θ is rate-limited (it rises as fast as Adam lets it), so L0 flattens near 5;
  below 3e-5 L0 approaches the λ → 0 value set by the reconstruction alone (≈ 55–60).
  The default sweep is four of these measured values, L0 ≈ 53, 33, 14, 5.5.
- smoke preset (94 steps, ≈ 0.9): not enough. θ only reaches ≈ 0.027 (init 0.011) and L0 stays
  ≈ 105 of 512 whatever λ (measured: 3e-4, 1e-3, 1e-2 → 105, 105, 108): a sanity run only.
- full preset (≈ 24k steps at lr 4e-4, ≈ 9.8): not measured here (CPU only); its sweep extends
  the default one a step each way, and there θ is no longer rate-limited, so high λ give a lower
  L0 than on the default preset.
- the conformance kit's default budget (156 steps at lr 3e-3, ≈ 0.5) is too short for the knob to
  show (L0 29.6 for every λ); tests/test_jumprelu.py runs it with tokens=400_000 (≈ 4.7).

Sources read for this recipe: SAELens (sae_lens/saes/jumprelu_sae.py: the Step and JumpReLU
autograd functions, θ = exp(log θ), θ init and ε 0.001), dictionary_learning
(trainers/jumprelu.py: Adam β = (0, 0.999) "from the paper", unit-norm decoder with gradient
projection), a JAX port of the paper's pseudo-code (He-uniform W_dec, W_enc = W_decᵀ, zero
biases), SAELens's Gemma Scope loader (no pre-encoder bias).

`JumpReLUGroup` is what the engine trains (every λ and seed stacked, batched matmuls);
`TrainableJumpReLUSAE` is the per-SAE reference it is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from saebench.architectures import JumpReLUSAE
from saebench.errors import ConfigError
from saebench.groups import GroupStep, SAEGroup, member_generators
from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, initial_b_dec, squared_error, total_variance
from saebench.specs import MethodSpec

# The paper's constants, on its scale (E‖x‖² = 1).
THRESHOLD_INIT_PAPER = 0.001
BANDWIDTH_PAPER = 0.001
KERNEL = "rectangle"
# λ must be positive: at 0 nothing trains θ upwards and the SAE is a dense autoencoder.
MIN_L0_COEFFICIENT = 1e-12

RECIPE_OVERRIDES: dict[str, Any] = {"adam_betas": (0.0, 0.999), "init_b_dec": "zero"}


def paper_scale(d_in: int) -> float:
    """Engine units per paper unit: E‖x‖ = √d (engine) against E‖x‖² = 1 (paper)."""
    return math.sqrt(d_in)


def recipe(d_in: int) -> dict[str, Any]:
    scale = paper_scale(d_in)
    return {
        "sparsity_penalty": "l0_step_ste",
        "loss": "rajamanoharan2024: ||x - x_hat||^2 + d_in * l0_coefficient * sum_i H(z_i - theta_i)",
        "l0_coefficient_scale": "paper (E||x||^2 = 1): engine penalty = d_in * l0_coefficient * L0",
        "ste_kernel": KERNEL,
        "bandwidth": BANDWIDTH_PAPER * scale,
        "bandwidth_paper_scale": BANDWIDTH_PAPER,
        "threshold_init": THRESHOLD_INIT_PAPER * scale,
        "threshold_init_paper_scale": THRESHOLD_INIT_PAPER,
        "threshold_parameterisation": "theta = exp(log_theta), fp32",
        "ste_to_input": False,
        "apply_b_dec_to_input": False,
        "decoder": "unit_norm_with_gradient_projection",
        "decoder_init": "he_uniform_rows_rescaled_to_unit_norm",
        "encoder_init": "W_enc = W_dec^T, b_enc = 0",
        "b_dec_init": "zero",
        "adam_betas": list(RECIPE_OVERRIDES["adam_betas"]),
        "sparsity_warmup": "linear from 0 over TrainConfig.sparsity_warmup_frac of the steps",
    }


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """K(u) = 1[−½ < u < ½]."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """z · H(z − θ); ∂/∂z = H(z − θ); ð/ðθ = −(θ/ε) K((z − θ)/ε). θ broadcasts against z (its
    gradient is summed over the broadcast dimensions, i.e. over the batch)."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        z, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        grad_z = (z > threshold).to(grad_output.dtype) * grad_output
        kernel = rectangle((z - threshold) / bandwidth)
        grad_threshold = (-(threshold / bandwidth) * kernel * grad_output).sum_to_size(
            threshold.shape
        )
        return grad_z, grad_threshold, None


class StepFunction(torch.autograd.Function):
    """H(z − θ); ∂/∂z = 0 (no STE to the input); ð/ðθ = −(1/ε) K((z − θ)/ε)."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        z, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        kernel = rectangle((z - threshold) / bandwidth)
        grad_threshold = (-(1.0 / bandwidth) * kernel * grad_output).sum_to_size(threshold.shape)
        return None, grad_threshold, None


def jumprelu(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return JumpReLUFunction.apply(z, threshold, bandwidth)  # type: ignore[no-any-return]


def step(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return StepFunction.apply(z, threshold, bandwidth)  # type: ignore[no-any-return]


def he_uniform_unit_rows(d_sae: int, d_in: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's decoder init: He-uniform (U(−a, a)), each row rescaled to unit norm (the
    rescaling makes a irrelevant)."""
    rows = torch.rand(d_sae, d_in, generator=generator) * 2 - 1
    return rows / rows.norm(dim=1, keepdim=True)


def check_l0_coefficient(knob: float) -> float:
    if not knob > 0:
        raise ConfigError(
            f"jumprelu: l0_coefficient={knob} must be > 0 (at 0 no gradient raises the "
            f"thresholds); pass positive values in --sweep jumprelu=..."
        )
    return float(knob)


def _threshold_to_state(module, state_dict, prefix, local_metadata) -> None:
    """state_dict() also holds `threshold` = exp(log θ): the SAELens name the saver writes."""
    state_dict[prefix + "threshold"] = module.threshold.detach()


def _threshold_from_state(module, state_dict, prefix, *args) -> None:
    """load_state_dict() accepts `threshold` alone (a saved SAE) or with `log_threshold`."""
    threshold = state_dict.pop(prefix + "threshold", None)
    if threshold is not None and prefix + "log_threshold" not in state_dict:
        state_dict[prefix + "log_threshold"] = torch.log(threshold.float())


class TrainableJumpReLUSAE(JumpReLUSAE, TrainableSAE):
    """The per-SAE reference implementation. θ is stored as `log_threshold`; `threshold` is the
    derived exp(log θ) that encode() uses and state_dict() carries, so it saves as a plain
    JumpReLU SAE."""

    recipe_overrides: ClassVar[dict] = RECIPE_OVERRIDES
    unit_norm_decoder = True

    def __init__(self, d_in, d_sae, l0_coefficient: float, **cfg):
        super().__init__(d_in, d_sae, apply_b_dec_to_input=False, **cfg)
        del self._parameters["threshold"]  # replaced by the trained log θ (fp32)
        self.l0_coefficient = check_l0_coefficient(l0_coefficient)
        self.cfg.update(l0_coefficient=self.l0_coefficient, **recipe(d_in))
        self.bandwidth = float(self.cfg["bandwidth"])
        log_init = math.log(float(self.cfg["threshold_init"]))
        self.log_threshold = nn.Parameter(torch.full((d_sae,), log_init, dtype=torch.float32))
        self.register_state_dict_post_hook(_threshold_to_state)
        self.register_load_state_dict_pre_hook(_threshold_from_state)

    @property  # type: ignore[override]
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def initialize(self, sample, init_b_dec="zero", generator=None, b_dec=None) -> None:
        with torch.no_grad():
            if generator is None:
                generator = torch.Generator().manual_seed(int(torch.randint(2**31, ()).item()))
            directions = he_uniform_unit_rows(self.d_sae, self.d_in, generator)
            self.W_dec.copy_(directions)
            self.W_enc.copy_(directions.T)
            self.b_enc.zero_()
            self.b_dec.copy_(initial_b_dec(sample, init_b_dec) if b_dec is None else b_dec)
            self.log_threshold.fill_(math.log(float(self.cfg["threshold_init"])))
            self.input_variance.fill_(total_variance(sample))

    def training_loss(self, x, sparsity_scale):
        z = self.pre_acts(x).float()
        threshold = self.threshold
        f = jumprelu(z, threshold, self.bandwidth)
        mse = squared_error(x, self.decode(f.to(x.dtype)))
        l0 = step(z, threshold, self.bandwidth).sum(-1).mean()
        penalty = self.d_in * self.l0_coefficient * l0
        loss = mse + sparsity_scale * penalty
        return (
            loss,
            f,
            {"mse": mse.item(), "sparsity": l0.item(), "threshold": threshold.mean().item()},
        )


class JumpReLUGroup(SAEGroup):
    """Every (λ, seed) of a run stacked: encoder rows [S, d_sae, d_in], decoder [S, d_sae, d_in],
    log θ [S, d_sae]."""

    recipe_overrides: ClassVar[dict] = RECIPE_OVERRIDES
    unit_norm_decoder = True

    def __init__(self, d_in: int, d_sae: int, knobs: Sequence[float]):
        super().__init__(d_in, d_sae, [check_l0_coefficient(k) for k in knobs])
        n = self.n_members
        self.recipe = recipe(d_in)
        self.bandwidth = float(self.recipe["bandwidth"])
        self.W_enc_rows = nn.Parameter(torch.zeros(n, d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(n, d_sae))
        log_init = math.log(float(self.recipe["threshold_init"]))
        self.log_threshold = nn.Parameter(torch.full((n, d_sae), log_init, dtype=torch.float32))
        self.W_dec = nn.Parameter(torch.zeros(n, d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(n, d_in))
        # d_in · λ: the penalty in engine units (λ is on the paper's scale).
        self.register_buffer("coefficients", d_in * torch.tensor(self.knobs))

    @torch.no_grad()
    def initialize(self, sample, seeds, init_b_dec):
        center = initial_b_dec(sample, init_b_dec)
        for index, generator in enumerate(member_generators(seeds)):
            directions = he_uniform_unit_rows(self.d_sae, self.d_in, generator)
            self.W_dec[index] = directions
            self.W_enc_rows[index] = directions
        self.b_enc.zero_()
        self.log_threshold.fill_(math.log(float(self.recipe["threshold_init"])))
        self.b_dec.copy_(center.expand_as(self.b_dec))

    def training_loss(self, x, sparsity_scale):
        z = torch.baddbmm(
            self.b_enc[:, None, :],
            x.expand(self.n_members, -1, -1),
            self.W_enc_rows.transpose(1, 2),
        ).float()
        threshold = self.log_threshold.exp()[:, None, :]
        f = jumprelu(z, threshold, self.bandwidth)
        x_hat = torch.baddbmm(self.b_dec[:, None, :], f, self.W_dec)
        mse = (x_hat - x).pow(2).sum(-1).mean(-1)
        l0 = step(z, threshold, self.bandwidth).sum(-1).mean(-1)
        member_loss = mse + sparsity_scale * self.coefficients * l0
        active = f.detach() != 0
        return GroupStep(
            loss=member_loss.sum(),
            member_loss=member_loss.detach(),
            mse=mse.detach(),
            l0=active.float().sum(-1).mean(-1),
            fired=active.any(1),
            extras={"sparsity": l0.detach(), "threshold": threshold.detach().mean(dim=(1, 2))},
        )

    @torch.no_grad()
    def member(self, index):
        sae = JumpReLUSAE(self.d_in, self.d_sae, apply_b_dec_to_input=False)
        sae.W_enc.copy_(self.W_enc_rows[index].T)
        sae.b_enc.copy_(self.b_enc[index])
        sae.threshold.copy_(self.log_threshold[index].exp())
        sae.W_dec.copy_(self.W_dec[index])
        sae.b_dec.copy_(self.b_dec[index])
        return sae.to(self.W_dec.device)

    def member_cfg(self, index):
        return {"l0_coefficient": self.knobs[index], **self.recipe}


def build(d_in: int, d_sae: int, knob: float) -> TrainableJumpReLUSAE:
    return TrainableJumpReLUSAE(d_in, d_sae, l0_coefficient=knob)


def build_group(d_in: int, d_sae: int, knobs: Sequence[float]) -> JumpReLUGroup:
    return JumpReLUGroup(d_in, d_sae, knobs)


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="jumprelu",
            description="JumpReLU SAE: per-latent learned thresholds, L0 penalty trained by "
            "straight-through estimators (DeepMind 2024)",
            knob="l0_coefficient",
            build=build,
            build_group=build_group,
            knob_min=MIN_L0_COEFFICIENT,
            # Measured on the toy world (module docstring): default L0 ≈ 53, 33, 14, 5.5.
            sweeps={
                "smoke": [1e-3],
                "default": [3e-5, 2e-4, 1e-3, 1e-2],
                "full": [1e-5, 3e-5, 2e-4, 1e-3, 3e-3, 1e-2],
            },
        )
    )

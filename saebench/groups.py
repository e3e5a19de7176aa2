"""Many SAEs of one method trained in one pass: the object the shared engine optimises.

An `SAEGroup` holds S SAEs (every knob and seed of a method) whose parameters are stacked on a
leading member axis, so one batch, one scaling, one optimiser step and batched matmuls serve them
all. The members never interact: every parameter slice affects only its member's loss, so Adam
(elementwise), the per-member gradient clipping and the decoder constraint give each member
exactly the trajectory it would have alone (tested to float tolerance).

A method plugin may provide its own group (`MethodSpec.build_group`, the built-ins do, with their
fast kernels); otherwise `LoopedGroup` wraps the per-SAE `TrainableSAE`s its `build` returns, so
any plugin trains in the same engine on the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from saebench.sae import SAE, TrainableSAE, initial_b_dec


@dataclass
class GroupStep:
    """One training step's outputs: the summed loss to differentiate and per-member statistics
    (tensors of shape [S], kept on the device so logging costs no synchronisation)."""

    loss: torch.Tensor  # scalar: the sum of the members' losses
    member_loss: torch.Tensor  # [S]
    mse: torch.Tensor  # [S] per-token ‖x − x̂‖² (normalised units)
    l0: torch.Tensor  # [S] mean active latents per token
    fired: torch.Tensor  # [S, d_sae] bool: latents active on some token of the batch
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # [S] each, e.g. auxk


def tied_directions(d_sae: int, d_in: int, norm: float, generator: torch.Generator) -> torch.Tensor:
    """Random decoder rows of the given norm (and, tied, the encoder's initial directions)."""
    directions = torch.randn(d_sae, d_in, generator=generator)
    return directions * (norm / directions.norm(dim=1, keepdim=True))


def member_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def clip_coefficients(norms: torch.Tensor, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_'s coefficient, per member: min(1, max / (‖g‖ + 1e-6))."""
    return (max_norm / (norms + 1e-6)).clamp(max=1.0)


class SAEGroup(nn.Module):
    """S SAEs of one method with parameters stacked on dim 0 (see the module docstring).

    Subclasses set parameters whose first dimension is the member axis, and implement
    `initialize`, `training_loss` and `member`. `W_dec` [S, d_sae, d_in] is the stacked decoder
    the shared constraint (`unit_norm_decoder`) acts on.
    """

    unit_norm_decoder = False
    # torch.compile may wrap `training_loss` (TrainConfig.compile): the dense groups, whose
    # elementwise work it fuses; the sparse TopK kernels gain nothing from it.
    compilable = False
    recipe_overrides: dict = {}  # noqa: RUF012 — read-only, like TrainableSAE's
    W_dec: torch.Tensor
    tokens_since_fired: torch.Tensor

    def __init__(self, d_in: int, d_sae: int, knobs: Sequence[float]):
        super().__init__()
        self.d_in, self.d_sae, self.knobs = d_in, d_sae, [float(k) for k in knobs]
        self.n_members = len(self.knobs)
        self.register_buffer(
            "tokens_since_fired", torch.zeros(self.n_members, d_sae, dtype=torch.long)
        )
        self.dead_window_tokens = 10_000_000

    def set_dead_window(self, tokens: int) -> None:
        self.dead_window_tokens = tokens

    def dead_mask(self) -> torch.Tensor:
        """[S, d_sae]: latents silent for the last `dead_window_tokens` training tokens."""
        return self.tokens_since_fired >= self.dead_window_tokens

    @torch.no_grad()
    def record_firing(self, fired: torch.Tensor, n_tokens: int) -> None:
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired.masked_fill_(fired, 0)

    def initialize(self, sample: torch.Tensor, seeds: Sequence[int], init_b_dec: str) -> None:
        raise NotImplementedError

    def training_loss(self, x: torch.Tensor, sparsity_scale: float | torch.Tensor) -> GroupStep:
        raise NotImplementedError

    def member(self, index: int) -> SAE:
        """Member `index` as an inference SAE (normalised units; the engine folds the scale)."""
        raise NotImplementedError

    def member_cfg(self, index: int) -> dict:
        """The recipe fields member `index` records in cfg.json."""
        return {}

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove each decoder row's gradient component along the (unit) row: g −= (g·d)d."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            unit = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
            parallel = (self.W_dec.grad * unit).sum(dim=-1, keepdim=True)
            self.W_dec.grad.sub_(parallel * unit)

    @torch.no_grad()
    def renormalize_decoder(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True))

    @torch.no_grad()
    def clip_grad_norms_(self, max_norm: float) -> torch.Tensor:
        """Clip each member's gradient to `max_norm` (its own norm over all its parameters)."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(self.n_members)
        squares = torch.stack([g.pow(2).reshape(self.n_members, -1).sum(1) for g in grads])
        norms = squares.sum(0).sqrt()
        coefficients = clip_coefficients(norms, max_norm)
        for g in grads:
            g.mul_(coefficients.view(-1, *([1] * (g.dim() - 1))))
        return norms


class LoopedGroup(SAEGroup):
    """A group over per-SAE `TrainableSAE`s (a plugin without `build_group`): the same batches
    and engine, one forward per member."""

    def __init__(self, saes: Sequence[TrainableSAE], knobs: Sequence[float]):
        first = saes[0]
        super().__init__(first.d_in, first.d_sae, knobs)
        self.members = nn.ModuleList(saes)
        self.saes = cast(list[TrainableSAE], list(self.members))  # the same modules, typed
        self.recipe_overrides = dict(getattr(first, "recipe_overrides", {}) or {})

    def dead_mask(self) -> torch.Tensor:
        return torch.stack([sae.dead_mask() for sae in self.saes])

    @torch.no_grad()
    def record_firing(self, fired: torch.Tensor, n_tokens: int) -> None:
        for sae, member_fired in zip(self.saes, fired):
            sae.tokens_since_fired.add_(n_tokens)
            sae.tokens_since_fired[member_fired] = 0

    def set_dead_window(self, tokens: int) -> None:
        self.dead_window_tokens = tokens
        for sae in self.saes:
            sae.dead_window_tokens = tokens

    def initialize(self, sample: torch.Tensor, seeds: Sequence[int], init_b_dec: str) -> None:
        center = initial_b_dec(sample, init_b_dec)
        for sae, generator in zip(self.saes, member_generators(seeds)):
            sae.initialize(sample, init_b_dec, generator=generator, b_dec=center)

    def training_loss(self, x: torch.Tensor, sparsity_scale: float | torch.Tensor) -> GroupStep:
        # Plugins' TrainableSAEs take a float (a LoopedGroup is never compiled).
        sparsity_scale = float(sparsity_scale)
        losses, mses, l0s, fired = [], [], [], []
        extras: dict[str, list[torch.Tensor]] = {}
        for sae in self.saes:
            loss, f, logs = sae.training_loss(x, sparsity_scale)
            losses.append(loss)
            active = f.detach() > 0
            fired.append(active.any(0))
            l0s.append(active.float().sum(-1).mean())
            mses.append(torch.as_tensor(float(logs.get("mse", float("nan")))))
            for name, value in logs.items():
                if name != "mse":
                    extras.setdefault(name, []).append(torch.as_tensor(float(value)))
        member_loss = torch.stack(losses)
        return GroupStep(
            loss=member_loss.sum(),
            member_loss=member_loss.detach(),
            mse=torch.stack(mses),
            l0=torch.stack(l0s),
            fired=torch.stack(fired),
            extras={name: torch.stack(values) for name, values in extras.items()},
        )

    def member(self, index: int) -> SAE:
        return self.saes[index]

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        for sae in self.saes:
            sae.project_decoder_grad()

    @torch.no_grad()
    def renormalize_decoder(self) -> None:
        for sae in self.saes:
            sae.renormalize_decoder()

    @torch.no_grad()
    def clip_grad_norms_(self, max_norm: float) -> torch.Tensor:
        return torch.stack(
            [torch.nn.utils.clip_grad_norm_(sae.parameters(), max_norm) for sae in self.saes]
        )

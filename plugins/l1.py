"""L1 SAE, Anthropic April-2024 recipe: decoder-norm-weighted L1, unconstrained decoder.

f = ReLU(x W_enc + b_enc) (no b_dec subtraction); L = ‖x − x̂‖² + λ Σ_i f_i ‖d_i‖.
Decoder rows start at norm 0.1 (the recipe); b_dec starts at the geometric median.

`L1Group` is what the engine trains (every λ and seed stacked, batched matmuls, the penalty as
one matrix-vector product); `L1SAE` is the per-SAE reference it is tested against.
"""

from collections.abc import Sequence

import torch
from torch import nn

from saebench.groups import GroupStep, SAEGroup, member_generators, tied_directions
from saebench.hookspecs import hookimpl
from saebench.sae import SAE, TrainableSAE, initial_b_dec, squared_error
from saebench.specs import MethodSpec

DECODER_INIT_NORM = 0.1  # the April-2024 recipe
RECIPE = {
    "sparsity_penalty": "decoder_norm_weighted_l1",
    "decoder_init_norm": DECODER_INIT_NORM,
    "apply_b_dec_to_input": False,
}


class L1SAE(TrainableSAE):
    architecture = "standard"
    decoder_init_norm = DECODER_INIT_NORM
    recipe = RECIPE

    def __init__(self, d_in, d_sae, l1_coefficient: float, **cfg):
        super().__init__(d_in, d_sae, apply_b_dec_to_input=False, **cfg)
        self.l1_coefficient = float(l1_coefficient)
        self.cfg.update(l1_coefficient=self.l1_coefficient, **self.recipe)

    def sparsity_penalty(self, f):
        return (f * self.W_dec.norm(dim=1)).sum(-1).mean()

    def training_loss(self, x, sparsity_scale):
        f = self.encode(x)
        mse = squared_error(x, self.decode(f))
        penalty = self.sparsity_penalty(f)
        loss = mse + sparsity_scale * self.l1_coefficient * penalty
        return loss, f, {"mse": mse.item(), "sparsity": penalty.item()}


class L1Group(SAEGroup):
    """Every (λ, seed) of a run stacked: encoder rows [S, d_sae, d_in], decoder [S, d_sae, d_in]."""

    compilable = True

    recipe = RECIPE

    def __init__(self, d_in: int, d_sae: int, knobs: Sequence[float]):
        super().__init__(d_in, d_sae, knobs)
        shape = (self.n_members, d_sae, d_in)
        self.W_enc_rows = nn.Parameter(torch.zeros(shape))
        self.b_enc = nn.Parameter(torch.zeros(self.n_members, d_sae))
        self.W_dec = nn.Parameter(torch.zeros(shape))
        self.b_dec = nn.Parameter(torch.zeros(self.n_members, d_in))
        self.register_buffer("coefficients", torch.tensor(self.knobs))

    @torch.no_grad()
    def initialize(self, sample, seeds, init_b_dec):
        center = initial_b_dec(sample, init_b_dec)
        for index, generator in enumerate(member_generators(seeds)):
            directions = tied_directions(self.d_sae, self.d_in, DECODER_INIT_NORM, generator)
            self.W_dec[index] = directions
            self.W_enc_rows[index] = directions
        self.b_enc.zero_()
        self.b_dec.copy_(center.expand_as(self.b_dec))

    def sparsity_penalty(self, f: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """[S]: mean over tokens of Σ_i f_i ‖d_i‖, as one batched matrix-vector product."""
        return torch.bmm(f, norms[:, :, None]).mean(dim=(1, 2))

    def training_loss(self, x, sparsity_scale):
        f = torch.relu(
            torch.baddbmm(
                self.b_enc[:, None, :],
                x.expand(self.n_members, -1, -1),
                self.W_enc_rows.transpose(1, 2),
            )
        )
        x_hat = torch.baddbmm(self.b_dec[:, None, :], f, self.W_dec)
        mse = (x_hat - x).pow(2).sum(-1).mean(-1)
        penalty = self.sparsity_penalty(f, self.W_dec.norm(dim=-1))
        member_loss = mse + sparsity_scale * self.coefficients * penalty
        active = f.detach() > 0
        return GroupStep(
            loss=member_loss.sum(),
            member_loss=member_loss.detach(),
            mse=mse.detach(),
            l0=active.float().sum(-1).mean(-1),
            fired=active.any(1),
            extras={"sparsity": penalty.detach()},
        )

    @torch.no_grad()
    def member(self, index):
        sae = SAE(self.d_in, self.d_sae, apply_b_dec_to_input=False)
        sae.W_enc.copy_(self.W_enc_rows[index].T)
        sae.b_enc.copy_(self.b_enc[index])
        sae.W_dec.copy_(self.W_dec[index])
        sae.b_dec.copy_(self.b_dec[index])
        return sae.to(self.W_dec.device)

    def member_cfg(self, index):
        return {"l1_coefficient": self.knobs[index], **self.recipe}


def build(d_in: int, d_sae: int, knob: float):
    return L1SAE(d_in, d_sae, l1_coefficient=knob)


def build_group(d_in: int, d_sae: int, knobs: Sequence[float]) -> L1Group:
    return L1Group(d_in, d_sae, knobs)


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="l1",
            description="ReLU SAE with decoder-norm-weighted L1 penalty (Anthropic April 2024)",
            knob="l1_coefficient",
            build=build,
            build_group=build_group,
            knob_min=0.0,
            # The L0 each knob gives on the default preset: docs/training.md.
            sweeps={
                "smoke": [6.0],
                "default": [0.7, 1.2, 2.5, 5.0],
                "full": [0.35, 0.7, 1.2, 2.5, 5.0, 10.0],
            },
        )
    )

"""TopK SAE (Gao et al. 2024), with the paper's loss (openai/sparse_autoencoder).

z = (x − b_dec) W_enc + b_enc; f = ReLU(TopK_k(z));
L = ‖x − x̂‖² / Var(x) + α · ‖e − ê‖² / Var(e),  α = 1/32,
Var(x) the per-token total variance of the training activations (fixed, from the init sample),
e = x − x̂ (detached), ê the decode (no b_dec) of the top-k_aux pre-activations among dead latents
only, Var(e) its batch variance, k_aux = d_in/2. Both terms are normalised, as in the paper: the
AuxK term weighs 1/32 of the reconstruction term. Unit-norm decoder with gradient projection,
tied init, geometric-median b_dec. L0 = k by construction (at most).

`TopKGroup` is the fast path the engine trains: every k and seed of a run stacked, one dense
encoder matmul, and everything else sparse in the k selected latents (saebench.kernels).
`TrainableTopKSAE` is the dense reference it is tested against.
"""

from collections.abc import Sequence

import torch
from torch import nn

from saebench.architectures import TopKSAE, check_k, check_k_fits
from saebench.groups import GroupStep, SAEGroup, member_generators, tied_directions
from saebench.hookspecs import hookimpl
from saebench.kernels import global_indices, selected_pre_acts, sparse_decode
from saebench.sae import TrainableSAE, auxk_loss, initial_b_dec, squared_error, total_variance
from saebench.specs import MethodSpec

AUXK_ALPHA = 1 / 32
RECIPE = {
    "auxk_alpha": AUXK_ALPHA,
    "loss": "gao2024: mse/Var(x) + auxk_alpha * auxk_mse/Var(e)",
    "decoder": "unit_norm_with_gradient_projection",
}


def k_aux_for(d_in: int) -> int:
    return max(1, d_in // 2)


class TrainableTopKSAE(TopKSAE, TrainableSAE):
    """The dense reference implementation (one SAE, every matmul dense)."""

    unit_norm_decoder = True

    def __init__(self, d_in, d_sae, k: int, **cfg):
        super().__init__(d_in, d_sae, k=k, **cfg)
        self.k_aux = k_aux_for(d_in)
        self.cfg.update(k=self.k, k_aux=self.k_aux, **RECIPE)

    def training_loss(self, x, sparsity_scale):
        z = self.pre_acts(x)
        values, indices = z.topk(self.k, dim=-1)
        f = torch.zeros_like(z).scatter(-1, indices, torch.relu(values))
        x_hat = self.decode(f)
        mse = squared_error(x, x_hat)
        aux = auxk_loss(z, (x - x_hat).detach(), self.W_dec, self.dead_mask(), self.k_aux)
        loss = mse / self.input_variance + AUXK_ALPHA * aux
        return loss, f, {"mse": mse.item(), "auxk": float(aux.detach())}


class TopKGroup(SAEGroup):
    """Every (k, seed) of a run in one module: W_enc stored as rows [S, d_sae, d_in]."""

    unit_norm_decoder = True

    def __init__(self, d_in: int, d_sae: int, knobs: Sequence[float]):
        super().__init__(d_in, d_sae, knobs)
        ks = [check_k(knob, d_sae, "topk") for knob in knobs]
        self.ks, self.k_max, self.k_aux = ks, max(ks), k_aux_for(d_in)
        shape = (self.n_members, d_sae, d_in)
        self.W_enc_rows = nn.Parameter(torch.zeros(shape))
        self.b_enc = nn.Parameter(torch.zeros(self.n_members, d_sae))
        self.W_dec = nn.Parameter(torch.zeros(shape))
        self.b_dec = nn.Parameter(torch.zeros(self.n_members, d_in))
        # Members with k < k_max keep the first k of the k_max sorted selections.
        keep = torch.arange(self.k_max)[None, :] < torch.tensor(ks)[:, None]
        self.register_buffer("keep", keep[:, None, :].float())
        self.register_buffer("input_variance", torch.ones(()))

    @torch.no_grad()
    def initialize(self, sample, seeds, init_b_dec):
        center = initial_b_dec(sample, init_b_dec)
        for index, generator in enumerate(member_generators(seeds)):
            directions = tied_directions(self.d_sae, self.d_in, 1.0, generator)
            self.W_dec[index] = directions
            self.W_enc_rows[index] = directions
        self.b_enc.zero_()
        self.b_dec.copy_(center.expand_as(self.b_dec))
        self.input_variance.fill_(total_variance(sample))

    def training_loss(self, x, sparsity_scale):
        n, m, d = self.n_members, self.d_sae, self.d_in
        W_flat, D_flat = self.W_enc_rows.view(n * m, d), self.W_dec.view(n * m, d)
        # (x − b_dec)·w + b_enc = x·w + offset: one dense matmul shared by every member.
        offset = self.b_enc - torch.bmm(self.W_enc_rows, self.b_dec[:, :, None]).squeeze(-1)
        with torch.no_grad():
            x_dots = (x @ W_flat.T).view(-1, n, m).transpose(0, 1)  # [S, B, m]
            z = x_dots + offset.detach()[:, None, :]
            indices = z.topk(self.k_max, dim=-1).indices
            rows = global_indices(indices, m)
        pre = selected_pre_acts(x, W_flat, offset.view(-1), x_dots.gather(-1, indices), rows)
        acts = torch.relu(pre) * self.keep
        x_hat = sparse_decode(rows, acts, D_flat) + self.b_dec[:, None, :]
        error = x[None] - x_hat
        mse = error.pow(2).sum(-1).mean(-1)
        aux = self.auxk(x, z, x_dots, offset.view(-1), error.detach(), W_flat, D_flat)
        member_loss = mse / self.input_variance + AUXK_ALPHA * aux
        active = acts.detach() > 0
        fired = torch.zeros(n, m, device=x.device).scatter_add_(
            1, indices.reshape(n, -1), active.reshape(n, -1).float()
        )
        return GroupStep(
            loss=member_loss.sum(),
            member_loss=member_loss.detach(),
            mse=mse.detach(),
            l0=active.float().sum(-1).mean(-1),
            fired=fired > 0,
            extras={"auxk": aux.detach()},
        )

    def auxk(self, x, z, x_dots, offset, error, W_flat, D_flat) -> torch.Tensor:
        """AuxK per member, computed on that member's dead latents only."""
        dead = self.dead_mask()
        losses = [x.new_zeros(()) for _ in range(self.n_members)]
        for index in dead.any(1).nonzero().flatten().tolist():
            dead_ids = dead[index].nonzero().flatten()
            with torch.no_grad():
                k_aux = min(self.k_aux, len(dead_ids))
                latents = dead_ids[z[index][:, dead_ids].topk(k_aux, dim=-1).indices]
                rows = (latents + index * self.d_sae)[None]
                dots = x_dots[index].gather(-1, latents)[None]
            pre = selected_pre_acts(x, W_flat, offset, dots, rows)
            error_hat = sparse_decode(rows, torch.relu(pre), D_flat)[0]
            target = error[index]
            denominator = (target - target.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
            losses[index] = (target - error_hat).pow(2).sum(-1).mean() / denominator
        return torch.stack(losses)

    @torch.no_grad()
    def member(self, index):
        sae = TopKSAE(self.d_in, self.d_sae, k=self.ks[index])
        sae.W_enc.copy_(self.W_enc_rows[index].T)
        sae.b_enc.copy_(self.b_enc[index])
        sae.W_dec.copy_(self.W_dec[index])
        sae.b_dec.copy_(self.b_dec[index])
        return sae.to(self.W_dec.device)

    def member_cfg(self, index):
        return {"k": self.ks[index], "k_aux": self.k_aux, **RECIPE}


def build(d_in: int, d_sae: int, knob: float) -> TrainableTopKSAE:
    return TrainableTopKSAE(d_in, d_sae, k=check_k_fits(knob, d_in, d_sae, "topk"))


def build_group(d_in: int, d_sae: int, knobs: Sequence[float]) -> TopKGroup:
    return TopKGroup(d_in, d_sae, [check_k_fits(k, d_in, d_sae, "topk") for k in knobs])


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="topk",
            description="TopK SAE with AuxK dead-latent loss and unit-norm decoder (OpenAI 2024)",
            knob="k",
            build=build,
            build_group=build_group,
            knob_is_integer=True,
            knob_min=1,
            sweeps={"smoke": [16], "default": [8, 16, 32, 64], "full": [8, 16, 32, 64, 128, 256]},
        )
    )

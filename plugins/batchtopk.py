"""BatchTopK SAE (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders", arXiv:2412.06410).

Training, on a batch X of B tokens (the paper's BatchTopK activation):
    z = (x − b_dec) W_enc + b_enc                          [B, d_sae]
    f(X) = BatchTopK_k(ReLU(z)): keep the k·B largest entries of ReLU(z) over the *whole batch*
           and zero the rest, so the batch holds k·B active latents — L0 = k on average over the
           batch, while each token gets as many latents as it needs;
    x̂ = f W_dec + b_dec.
Loss (exactly the built-in `topk`'s, Gao et al. 2024 as in openai/sparse_autoencoder):
    L = ‖x − x̂‖² / Var(x) + α · ‖e − ê‖² / Var(e),   α = 1/32,
    Var(x) the init sample's per-token total variance (a constant), e = x − x̂ (detached), ê the
    decode (no b_dec) of each token's top-k_aux pre-activations among dead latents only, Var(e)
    its batch variance, k_aux = d_in/2. TopK and BatchTopK differ only in the selection.
Inference (the paper's §3): a global threshold estimated on the training batches,
    θ = E_X[ min{ f_ij(X) : f_ij(X) > 0 } ]   (the smallest positive kept activation),
    f(x) = z · 1[z > θ]  — a JumpReLU with one θ on every latent, no batch dependence. Saved as
    architecture "jumprelu" with θ on each latent, so it reloads without this plugin (what
    SAELens does with its batchtopk SAEs). For θ ≥ 0 this equals dictionary_learning's
    ReLU(z) · 1[ReLU(z) > θ].

Choices where the public recipes differ (every one recorded in `sae.cfg`):
- Loss normalisation: the reconstruction term is divided by the constant Var(x), as the
  built-in `topk` does. Departure from the paper and dictionary_learning's BatchTopKTrainer
  (plain ‖x − x̂‖² + α · the normalised AuxK): a constant rescaling that, under Adam, only sets
  AuxK's relative weight to Gao et al.'s, and keeps TopK vs BatchTopK a comparison of the
  selection alone.
- θ estimator: dictionary_learning's form — per training batch the statistic m_t = the smallest
  positive kept activation (fp32, no gradient), θ ← m at the first update, then the EMA
  θ ← β θ + (1 − β) m_t. Departure: β = 0.9 from the first step, where dictionary_learning uses
  β = 0.999 from step 1000 (threshold_beta, threshold_start_step) and SAELens β = 0.99
  (topk_threshold_lr = 0.01), both tuned for runs of 10^5 steps. The smoke/default presets
  train 94–586 steps with the lr decaying to 0 over the last 20%: a 1000-step memory would never
  start (or would average early-training values), while β = 0.9 averages the last ~10–20
  batches, inside the final decay where the weights are nearly final. m_t (the k·B-th largest
  of B·d_sae values) is a stable per-batch statistic, so the short memory costs little noise.
  The same β as the built-in `matryoshka` (BatchTopK inside).
- Unit-norm decoder with gradient projection, tied init, geometric-median b_dec, b_enc = 0
  (dictionary_learning; the shared engine's defaults). Dead latents by tokens, as `topk`.
- No k annealing (dictionary_learning's k_anneal_steps, off by default there too).

`BatchTopKGroup` is the fast path the engine trains: every k and seed of a run stacked, one
dense encoder matmul, and the rest sparse in the k·B selected (token, latent) pairs (the
selection varies per token, so the decoder runs as an `embedding_bag` over token bags with the
encoder/decoder weight gradients as sparse × dense products). `TrainableBatchTopKSAE` is the
dense reference it is tested against (saebench.testing.check_group_matches_build).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from saebench.architectures import JumpReLUSAE, check_k, check_k_fits
from saebench.groups import GroupStep, SAEGroup, member_generators, tied_directions
from saebench.hookspecs import hookimpl
from saebench.sae import TrainableSAE, auxk_loss, initial_b_dec, squared_error, total_variance
from saebench.specs import MethodSpec
from saebench_plugins.topk import AUXK_ALPHA, TopKGroup, k_aux_for

THRESHOLD_BETA = 0.9  # weight on the old θ in its EMA (dictionary_learning: 0.999 from step 1000)
RECIPE = {
    "auxk_alpha": AUXK_ALPHA,
    "loss": "gao2024: mse/Var(x) + auxk_alpha * auxk_mse/Var(e)",
    "sparsity": "batchtopk: top k*B of ReLU(z) over the batch",
    "decoder": "unit_norm_with_gradient_projection",
    "threshold_beta": THRESHOLD_BETA,
    "threshold_statistic": "min positive kept activation per training batch; EMA from step 1",
    "inference": "jumprelu_uniform_threshold",
}


def batch_topk(acts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the k·B largest entries of acts [B, m] over the whole batch: (f, the kept values)."""
    flat = acts.flatten()
    values, indices = flat.topk(min(k * acts.shape[0], flat.numel()))
    return torch.zeros_like(flat).scatter(0, indices, values).view_as(acts), values


def ema_threshold(
    threshold: torch.Tensor, seen: torch.Tensor, smallest: torch.Tensor, has: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One θ update: θ ← m on the first batch with a positive kept activation, then
    θ ← β θ + (1 − β) m. Elementwise over members; returns (θ, seen)."""
    updated = torch.where(
        seen, THRESHOLD_BETA * threshold + (1 - THRESHOLD_BETA) * smallest, smallest
    )
    return torch.where(has, updated, threshold), seen | has


class TrainableBatchTopKSAE(JumpReLUSAE, TrainableSAE):
    """The dense reference implementation (one SAE, every matmul dense). Inference is the
    JumpReLU it inherits, with θ on every latent."""

    unit_norm_decoder = True

    def __init__(self, d_in, d_sae, k: int, **cfg):
        super().__init__(d_in, d_sae, **cfg)
        # Named batch_k, not k: a saved jumprelu cfg.json must not carry a TopK-style "k".
        self.batch_k = check_k(k, d_sae, "batchtopk")
        self.k_aux = k_aux_for(d_in)
        # θ is an inference statistic, not a trained parameter: keep it out of the optimiser.
        self.threshold.requires_grad_(False)
        self.register_buffer("threshold_seen", torch.zeros((), dtype=torch.bool), persistent=False)
        self.cfg.update(k=self.batch_k, k_aux=self.k_aux, **RECIPE)

    def initialize(self, sample, init_b_dec="geometric_median", generator=None, b_dec=None):
        super().initialize(sample, init_b_dec, generator=generator, b_dec=b_dec)
        with torch.no_grad():
            self.threshold.zero_()
            self.threshold_seen.fill_(False)

    @torch.no_grad()
    def update_threshold(self, kept: torch.Tensor) -> None:
        positive = kept.float().masked_fill(kept <= 0, float("inf"))
        smallest = positive.min()
        threshold, seen = ema_threshold(
            self.threshold[:1], self.threshold_seen, smallest, torch.isfinite(smallest)
        )
        self.threshold.fill_(float(threshold))
        self.threshold_seen.copy_(seen)

    def training_loss(self, x, sparsity_scale):
        z = self.pre_acts(x)
        f, kept = batch_topk(torch.relu(z), self.batch_k)
        if self.training:
            self.update_threshold(kept.detach())
        x_hat = self.decode(f)
        mse = squared_error(x, x_hat)
        aux = auxk_loss(z, (x - x_hat).detach(), self.W_dec, self.dead_mask(), self.k_aux)
        loss = mse / self.input_variance + AUXK_ALPHA * aux
        logs = {
            "mse": mse.item(),
            "auxk": float(aux.detach()),
            "threshold": float(self.threshold[0]),
        }
        return loss, f, logs


class _SelectedPreActs(torch.autograd.Function):
    """out[s, n] = x[t] · W_flat[r] + offset[r] at r = rows[s, n], t = tokens[s, n], with x·w
    read from the dense encoder forward; the backward touches the selected rows only."""

    @staticmethod
    def forward(ctx, W_flat, offset, x, dots, rows, tokens):
        ctx.save_for_backward(x, rows, tokens)
        ctx.n_rows = W_flat.shape[0]
        return dots + offset[rows]

    @staticmethod
    def backward(ctx, grad):
        x, rows, tokens = ctx.saved_tensors
        grad_W = _rows_times(rows, tokens, grad, x, ctx.n_rows)
        grad_offset = grad.new_zeros(ctx.n_rows).index_add_(0, rows.reshape(-1), grad.reshape(-1))
        return grad_W, grad_offset, None, None, None, None


class _DecoderWeightGrad(torch.autograd.Function):
    """Identity on the decoded output that adds the decoder-weight gradient: row r receives
    Σ act · grad[bag] over the selected (bag, r) pairs (embedding_bag gives the activations'
    gradient natively; its weight gradient sorts every index)."""

    @staticmethod
    def forward(ctx, out, D_flat, acts, rows, bags):
        ctx.save_for_backward(acts, rows, bags)
        ctx.n_rows = D_flat.shape[0]
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        acts, rows, bags = ctx.saved_tensors
        return grad, _rows_times(rows, bags, acts, grad, ctx.n_rows), None, None, None


def _rows_times(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, dense: torch.Tensor, n_rows: int
) -> torch.Tensor:
    """Σ_n values[n] · dense[cols[n]] added into row rows[n]: one sparse × dense product."""
    sparse = torch.sparse_coo_tensor(
        torch.stack([rows.reshape(-1), cols.reshape(-1)]),
        values.reshape(-1).to(dense.dtype),
        (n_rows, dense.shape[0]),
        check_invariants=False,
    )
    return torch.sparse.mm(sparse, dense)


def bag_decode(
    rows: torch.Tensor, bags: torch.Tensor, acts: torch.Tensor, D_flat: torch.Tensor, n_bags: int
) -> torch.Tensor:
    """out[b] = Σ_{n: bags[n] = b} acts[n] · D_flat[rows[n]] → [n_bags, d] (no bias), for
    `bags` non-decreasing in flattened order (each token's selections contiguous)."""
    counts = torch.bincount(bags.reshape(-1), minlength=n_bags)
    offsets = counts.cumsum(0) - counts
    out = F.embedding_bag(
        rows.reshape(-1),
        D_flat.detach(),
        offsets,
        mode="sum",
        per_sample_weights=acts.reshape(-1).to(D_flat.dtype),
    )
    return _DecoderWeightGrad.apply(out, D_flat, acts.detach(), rows, bags)


class BatchTopKGroup(SAEGroup):
    """Every (k, seed) of a run in one module: W_enc stored as rows [S, d_sae, d_in]."""

    unit_norm_decoder = True
    auxk = TopKGroup.auxk  # AuxK is TopK's, per member on its dead latents (same attributes)

    def __init__(self, d_in: int, d_sae: int, knobs: Sequence[float]):
        super().__init__(d_in, d_sae, knobs)
        ks = [check_k(knob, d_sae, "batchtopk") for knob in knobs]
        self.ks, self.k_max, self.k_aux = ks, max(ks), k_aux_for(d_in)
        shape = (self.n_members, d_sae, d_in)
        self.W_enc_rows = nn.Parameter(torch.zeros(shape))
        self.b_enc = nn.Parameter(torch.zeros(self.n_members, d_sae))
        self.W_dec = nn.Parameter(torch.zeros(shape))
        self.b_dec = nn.Parameter(torch.zeros(self.n_members, d_in))
        self.register_buffer("member_k", torch.tensor(ks))
        self.register_buffer("threshold", torch.zeros(self.n_members))
        self.register_buffer("threshold_seen", torch.zeros(self.n_members, dtype=torch.bool))
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
        self.threshold.zero_()
        self.threshold_seen.fill_(False)

    def training_loss(self, x, sparsity_scale):
        n, m, d = self.n_members, self.d_sae, self.d_in
        batch = x.shape[0]
        W_flat, D_flat = self.W_enc_rows.view(n * m, d), self.W_dec.view(n * m, d)
        # (x − b_dec)·w + b_enc = x·w + offset: one dense matmul shared by every member.
        offset = self.b_enc - torch.bmm(self.W_enc_rows, self.b_dec[:, :, None]).squeeze(-1)
        members = torch.arange(n, device=x.device)[:, None]
        with torch.no_grad():
            x_dots = torch.matmul(x, self.W_enc_rows.transpose(1, 2))  # [S, B, m], contiguous
            z = x_dots + offset.detach()[:, None, :]
            n_select = min(self.k_max * batch, batch * m)
            # Sorted, so member s keeps its first k_s·B: one topk serves every k of the group.
            # The top k·B of ReLU(z) are ReLU of the top k·B of z (ties at 0 decode to 0).
            values, flat = z.view(n, batch * m).topk(n_select, dim=-1)
            values = torch.relu(values)
            keep = torch.arange(n_select, device=x.device)[None, :] < self.member_k[:, None] * batch
            kept = values.float().masked_fill(~keep | (values <= 0), float("inf"))
            smallest = kept.min(-1).values
            threshold, seen = ema_threshold(
                self.threshold, self.threshold_seen, smallest, torch.isfinite(smallest)
            )
            self.threshold.copy_(threshold)
            self.threshold_seen.copy_(seen)
            # Token-major order: each token's selections contiguous (the decoder's bags).
            flat, order = flat.sort(dim=-1)
            keep = keep.gather(-1, order)
            tokens, latents = flat // m, flat % m
            rows = latents + members * m
            bags = tokens + members * batch
            dots = x_dots.view(n, batch * m).gather(-1, flat)
        pre = _SelectedPreActs.apply(W_flat, offset.view(-1), x, dots, rows, tokens)
        acts = torch.relu(pre) * keep
        decoded = bag_decode(rows, bags, acts, D_flat, n * batch).view(n, batch, d)
        x_hat = decoded + self.b_dec[:, None, :]
        error = x[None] - x_hat
        mse = error.pow(2).sum(-1).mean(-1)
        aux = self.auxk(x, z, x_dots, offset.view(-1), error.detach(), W_flat, D_flat)
        member_loss = mse / self.input_variance + AUXK_ALPHA * aux
        active = acts.detach() > 0
        fired = torch.zeros(n, m, device=x.device).scatter_add_(1, latents, active.float())
        return GroupStep(
            loss=member_loss.sum(),
            member_loss=member_loss.detach(),
            mse=mse.detach(),
            l0=active.float().sum(-1) / batch,
            fired=fired > 0,
            extras={"auxk": aux.detach(), "threshold": self.threshold.clone()},
        )

    @torch.no_grad()
    def member(self, index):
        sae = JumpReLUSAE(self.d_in, self.d_sae)
        sae.W_enc.copy_(self.W_enc_rows[index].T)
        sae.b_enc.copy_(self.b_enc[index])
        sae.W_dec.copy_(self.W_dec[index])
        sae.b_dec.copy_(self.b_dec[index])
        sae.threshold.fill_(float(self.threshold[index]))
        sae.threshold.requires_grad_(False)  # an inference statistic, as in the reference
        return sae.to(self.W_dec.device)

    def member_cfg(self, index):
        return {"k": self.ks[index], "k_aux": self.k_aux, **RECIPE}


def build(d_in: int, d_sae: int, knob: float) -> TrainableBatchTopKSAE:
    return TrainableBatchTopKSAE(d_in, d_sae, k=check_k_fits(knob, d_in, d_sae, "batchtopk"))


def build_group(d_in: int, d_sae: int, knobs: Sequence[float]) -> BatchTopKGroup:
    return BatchTopKGroup(d_in, d_sae, [check_k_fits(k, d_in, d_sae, "batchtopk") for k in knobs])


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="batchtopk",
            description="BatchTopK SAE: top k·B over the batch, AuxK, unit-norm decoder; a "
            "learned uniform threshold at inference, saved as jumprelu (Bussmann et al. 2024)",
            knob="k",
            build=build,
            build_group=build_group,
            knob_is_integer=True,
            knob_min=1,
            sweeps={"smoke": [16], "default": [8, 16, 32, 64], "full": [8, 16, 32, 64, 128, 256]},
        )
    )

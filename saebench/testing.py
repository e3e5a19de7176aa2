"""The plugin-author kit; its fixtures come from the pytest plugin saebench.pytest_plugin.

In a plugin's own test suite:

    from saebench.testing import check_method_conformance

    def test_my_method(saebench_method_conformance):
        saebench_method_conformance(my_plugin.METHOD_SPEC)

checks shapes, encode/decode, the SAELens save/load round trip, that the sparsity knob is
honoured (L0 moves monotonically with it) and that the training loss decreases on a small
synthetic superposition stream. `check_task_conformance` runs a task on a context (by default a
model-free synthetic one) and checks it returns finite, declared metrics and leaves the SAE as
it was. `saebench_quality_gate(BASELINE)` fails a test when a rerun of the baseline's
configuration regressed beyond seed noise (see docs/regression-gate.md).
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path
from typing import cast

import torch

from saebench.activations import InMemoryStore
from saebench.gate import DEFAULT_Z, GateResult, assert_no_regression, run_and_check
from saebench.sae import signed_basis_sae
from saebench.synthetic import SuperpositionStream


def shuffled_sae(sae, seed: int = 0):
    """A copy of `sae` whose decoder rows are permuted relative to its encoder: the same latents
    fire, with the same values, but each writes another latent's direction. Every metric that
    uses the decoder (reconstruction, interventions, selected-latent edits) must score it like
    a dictionary that learned nothing; metrics that read only the latents cannot tell."""
    import copy

    shuffled = copy.deepcopy(sae)
    order = torch.randperm(sae.d_sae, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        shuffled.W_dec.copy_(sae.W_dec[order])
    shuffled.cfg = {**getattr(sae, "cfg", {}), "shuffled_decoder_seed": seed}
    return shuffled


def superposition_acts(
    n_tokens: int, n_features: int = 64, d: int = 16, p: float = 0.04, seed: int = 0
):
    """(acts [n_tokens, d], true unit directions [n_features, d]) from a SuperpositionStream."""
    stream = SuperpositionStream(n_features, d, firing_prob=p, seed=seed)
    return stream.sample(n_tokens)[0], stream.true_directions


def _train(spec, knob, store, d_sae, tokens, seed=0):
    from saebench.training import TrainConfig, train_sae

    cfg = TrainConfig(
        d_sae=d_sae,
        total_tokens=tokens,
        batch_size=256,
        lr=3e-3,
        progress=False,
        seed=seed,
        dead_window_tokens=5_000,
    )
    return train_sae(spec, knob, store, cfg)


def check_method_conformance(spec, d_in: int = 16, d_sae: int = 64, tokens: int = 40_000):
    """Assert that a MethodSpec behaves like an saebench method. Returns a dict of findings."""
    from saebench.saved_format import load_sae, save_sae

    acts, _ = superposition_acts(12_000, d=d_in)
    store = InMemoryStore(acts[:10_000], acts[10_000:])
    assert store.eval_acts is not None  # given above
    knobs = sorted(spec.sweeps.get("default") or spec.sweeps.get("smoke"))
    assert knobs, f"{spec.name}: needs a non-empty sweep for 'default' or 'smoke'"
    if spec.knob_is_integer:
        # k near d_sae saturates (every positive pre-activation kept): test the sparse regime.
        knobs = [k for k in knobs if k <= d_sae // 4] or [1]
    sae, log = _train(spec, knobs[0], store, d_sae, tokens)
    x = store.eval_acts[:256]
    f = sae.encode(x)
    assert f.shape == (256, sae.d_sae), f"{spec.name}: encode shape {tuple(f.shape)}"
    assert sae.decode(f).shape == x.shape, f"{spec.name}: decode shape"
    assert sae.W_enc.shape == (d_in, sae.d_sae) and sae.W_dec.shape == (sae.d_sae, d_in)
    assert torch.isfinite(sae(x)).all(), f"{spec.name}: non-finite reconstruction"
    with tempfile.TemporaryDirectory() as tmp:
        save_sae(sae, Path(tmp) / "sae", metadata={"model_name": "conformance"})
        loaded = load_sae(Path(tmp) / "sae")
        assert torch.allclose(loaded(x), sae(x), atol=1e-5), (
            f"{spec.name}: save/load changed outputs"
        )
    findings = {"tokens_per_second": log.get("tokens_per_second")}
    if spec.trainable:
        history = log["final_train"]
        first_loss = _initial_loss(spec, knobs[0], store, d_sae)
        assert history["loss"] < first_loss, (
            f"{spec.name}: training did not lower the loss ({first_loss:.4g} → {history['loss']:.4g})"
        )
        if len(knobs) >= 2:
            # Low, middle and high knob: L0 must move monotonically (k raises it, λ lowers it).
            chosen = sorted({knobs[0], knobs[len(knobs) // 2], knobs[-1]})
            l0s = [_l0(sae, x)] + [
                _l0(_train(spec, knob, store, d_sae, tokens)[0], x) for knob in chosen[1:]
            ]
            steps = [b - a for a, b in itertools.pairwise(l0s)]
            assert all(s > 0 for s in steps) or all(s < 0 for s in steps), (
                f"{spec.name}: L0 is not monotone in {spec.knob}: "
                + ", ".join(f"{k}→{v:.2f}" for k, v in zip(chosen, l0s))
            )
            assert not math.isclose(l0s[0], l0s[-1], rel_tol=0.05), (
                f"{spec.name}: {spec.knob}={chosen[0]} and {chosen[-1]} give the same L0"
            )
            findings["l0_by_knob"] = dict(zip(chosen, l0s))
    if spec.trainable and spec.build_group is not None:
        findings["group_matches_build"] = check_group_matches_build(spec, knobs[0], store, d_sae)
    return findings


def check_group_matches_build(spec, knob, store, d_sae: int, tokens: int = 5_120) -> float:
    """A method's fast `build_group` must train the SAEs its per-SAE `build` trains: two seeds,
    both paths, the same batches; returns the largest difference of the members' outputs."""
    from dataclasses import replace

    from saebench.training import TrainConfig, train_group

    cfg = TrainConfig(
        d_sae=d_sae,
        total_tokens=tokens,
        batch_size=256,
        lr=3e-3,
        progress=False,
        dead_window_tokens=1_000,
    )
    members = [(knob, 0), (knob, 1)]
    fast = train_group(spec, members, store, cfg)
    looped = train_group(replace(spec, build_group=None), members, store, cfg)
    x = store.eval_acts[:256]
    worst = 0.0
    for a, b in zip(fast, looped):
        assert a.error is None and b.error is None, f"{spec.name}: {a.error or b.error}"
        with torch.no_grad():
            difference = (a.sae(x) - b.sae(x)).abs().max().item()
        scale = x.abs().max().item()
        assert difference <= 1e-3 * scale, (
            f"{spec.name}: build_group trains different SAEs than build (max |Δx̂| "
            f"{difference:.3g}); the stacked implementation must match the per-SAE one"
        )
        worst = max(worst, difference)
    return worst


def _l0(sae, x) -> float:
    with torch.no_grad():
        return (sae.encode(x) != 0).float().sum(-1).mean().item()


def _initial_loss(spec, knob, store, d_sae):
    from saebench.training import TrainConfig, input_scale

    sae = spec.build(d_in=store.d_in, d_sae=d_sae, knob=knob)
    sample = store.sample(2048, 0)
    scale = input_scale(sample, TrainConfig(d_sae=d_sae, total_tokens=1).normalize)
    torch.manual_seed(0)
    sae.initialize(sample * scale)
    with torch.no_grad():
        loss, _, _ = sae.training_loss(store.eval_acts[:1024] * scale, 1.0)
    return loss.item()


def synthetic_task_context(
    artifacts_dir, sae=None, d_in: int = 16, n_eval: int = 2_000, device="cpu"
):
    """A model-free TaskContext on a synthetic stream, for tasks that only need activations.

    `model`, `eval_tokens` and `eval_mask` are None: tasks that run the language model must
    build their own context (e.g. from a toy-world ModelHandle) and pass it instead.
    """
    from saebench.specs import ModelHandle, TaskContext

    stream = SuperpositionStream(64, d_in, firing_prob=0.04, seed=0)
    store = stream.store(4_000, n_eval)
    assert store.eval_acts is not None, "synthetic_task_context needs n_eval > 0"
    if sae is None:
        # The neuron basis as ± latents: reconstructs exactly and depends on no method plugin.
        sae = signed_basis_sae(torch.eye(d_in), torch.zeros(d_in), "identity")
    return TaskContext(
        # Model-free by design (see the docstring): TaskContext declares `model: ModelHandle`
        # for real runs, so the deliberate None is cast at this one boundary.
        model=cast(ModelHandle, None),
        hook="synthetic",
        sae=sae.to(device).eval(),
        eval_acts=store.eval_acts.to(device),
        eval_tokens=None,
        eval_mask=None,
        device=device,
        preset="smoke",
        seed=0,
        cache={},
        artifacts_dir=Path(artifacts_dir),
        method="synthetic",
        knob=0,
    )


def check_task_conformance(spec, ctx=None, ctx_factory=None):
    """Run a task and check it returns finite metrics, all declared, without changing the SAE.

    Pass a ready TaskContext as `ctx`, or `ctx_factory(artifacts_dir) -> TaskContext`; with
    neither, a model-free synthetic context is used (see `synthetic_task_context`).
    """
    with tempfile.TemporaryDirectory() as tmp:
        if ctx is None:
            ctx = (ctx_factory or synthetic_task_context)(Path(tmp) / "artifacts")
        before = {k: v.detach().clone() for k, v in ctx.sae.state_dict().items()}
        metrics = dict(spec.run(ctx))
        assert metrics, f"task {spec.name} returned no metrics"
        for name, value in metrics.items():
            spec.metric_info(name)  # raises KeyError naming the undeclared metric
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (
                f"task {spec.name}: metric {name}={value!r} must be a plain int or float"
            )
            assert math.isfinite(value), f"task {spec.name}: metric {name}={value!r} is not finite"
        for key, tensor in ctx.sae.state_dict().items():
            assert torch.equal(tensor, before[key]), f"task {spec.name} modified the SAE ({key})"
    return metrics


class QualityGate:
    """What the `saebench_quality_gate` fixture returns: call it with a baseline file."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = Path(tmp_path)

    def __call__(
        self,
        baseline: str | Path,
        run_dir: str | Path | None = None,
        seeds: int = 1,
        z: float = DEFAULT_Z,
        device: str = "auto",
        cache_dir: str | Path | None = None,
    ) -> GateResult:
        """Fail (AssertionError with the table of what moved) if the run regressed. Without
        `run_dir`, rerun the baseline's configuration with `seeds` seeds into tmp_path first."""
        if run_dir is not None:
            return assert_no_regression(run_dir, baseline, z)
        return run_and_check(
            baseline, self.tmp_path / "saebench-gate-run", seeds, z, device, cache_dir
        )

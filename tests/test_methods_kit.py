"""The plugin-author kit itself: it passes good plugins and catches broken ones."""

import pytest
import torch

from saebench import plugins
from saebench.sae import TrainableSAE, squared_error
from saebench.specs import MethodSpec, MetricInfo, TaskSpec
from saebench.testing import check_method_conformance, check_task_conformance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_builtin_task_passes(saebench_task_conformance):
    metrics = saebench_task_conformance(plugins.get_task("frontier"))
    assert metrics["fvu"] < 1e-6  # the default context uses a PCA SAE: exact reconstruction


def task(run, metrics=None):
    return TaskSpec(
        name="t", description="", run=run, metrics=metrics or {"score": MetricInfo(True)}
    )


def test_undeclared_nan_and_mutating_tasks_fail():
    with pytest.raises(KeyError, match="does not declare"):
        check_task_conformance(task(lambda ctx: {"other": 1.0}))
    with pytest.raises(AssertionError, match="not finite"):
        check_task_conformance(task(lambda ctx: {"score": float("nan")}))

    def mutate(ctx):
        with torch.no_grad():
            ctx.sae.W_dec.mul_(2)
        return {"score": 1.0}

    with pytest.raises(AssertionError, match="modified the SAE"):
        check_task_conformance(task(mutate))


class IgnoresKnob(TrainableSAE):
    """A broken method: its sparsity knob does nothing."""

    def training_loss(self, x, sparsity_scale):
        f = self.encode(x)
        mse = squared_error(x, self.decode(f))
        return mse, f, {"mse": mse.item()}


def test_a_method_whose_knob_does_nothing_fails():
    spec = MethodSpec(
        name="broken",
        description="",
        knob="l1_coefficient",
        build=lambda d_in, d_sae, knob: IgnoresKnob(d_in, d_sae),
        sweeps={"default": [0.1, 1.0, 10.0]},
    )
    with pytest.raises(AssertionError, match="monotone|same L0"):
        check_method_conformance(spec, tokens=10_000)

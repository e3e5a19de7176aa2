"""The units of work: where an SAE trains and where its cells run (the model's device), without
a GPU: devices are recorded by stand-ins, so the CUDA split is exercised on CPU."""

from pathlib import Path
from types import SimpleNamespace

import torch

import saebench.training
from saebench import MetricInfo, TaskSpec
from saebench.rundir import SaeKey
from saebench.training import TrainConfig
from saebench.work import WorkerSpec, WorkerState, evaluate_cell, train_one


class DeviceRecordingSAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.moved_to = []

    def to(self, device):  # what evaluate_cell must do before the task runs
        self.moved_to.append(torch.device(device))
        return self


def state(device="cpu", sae_device=None):
    task = TaskSpec(
        name="where",
        description="reports the context's device",
        run=lambda ctx: {"model_side": float(ctx.device == torch.device(device))},
        metrics={"model_side": MetricInfo(None)},
    )
    method = SimpleNamespace(knob="k")
    return WorkerState(
        model=None,
        store=SimpleNamespace(eval_acts=None, eval_tokens=None, eval_mask=None),
        methods={"m": method},
        tasks={"where": task},
        device=torch.device(device),
        sae_device=torch.device(sae_device) if sae_device else None,
    )


SPEC = WorkerSpec(
    model="x",
    dataset=None,
    hook="h",
    device="cpu",
    store_dir="/nowhere",
    preset="smoke",
    train_config=TrainConfig(d_sae=4, total_tokens=1),
)


def test_cells_run_with_the_sae_on_the_models_device():
    sae = DeviceRecordingSAE()
    outcome = evaluate_cell(SPEC, state("cpu", "meta"), SaeKey("m", 1, 0), "where", sae, Path("."))
    assert outcome.cell.ok and outcome.cell.metrics == {"model_side": 1.0}
    assert sae.moved_to == [torch.device("cpu")]


def test_saes_train_on_the_sae_device_when_one_is_given(monkeypatch, tmp_path):
    seen = []

    def fake_train(method, members, store, config, device):
        seen.append(torch.device(device))
        raise RuntimeError("stop here: only the device matters")

    monkeypatch.setattr(saebench.training, "train_group", fake_train)
    for worker, expected in ((state("cpu", "meta"), "meta"), (state("cpu"), "cpu")):
        sae, outcome = train_one(SPEC, worker, SaeKey("m", 1, 0), tmp_path / "sae")
        assert sae is None and "stop here" in outcome.reason
        assert seen[-1] == torch.device(expected)


def nan_task(governed_passes: bool):
    from saebench.specs import Validity

    return TaskSpec(
        name="where",
        description="one metric undefined where its reference fails",
        run=lambda ctx: {"defined": 1.0, "undefined_here": float("nan")},
        metrics={"defined": MetricInfo(None), "undefined_here": MetricInfo(True)},
        validity=lambda ctx: [
            Validity("ref", 1.0, 1.0 if governed_passes else 0.0, 0.0, 0.1, governs=("undef*",))
        ],
    )


def test_a_metric_its_failing_reference_drops_may_be_undefined_but_a_reported_one_may_not():
    worker = state()
    for passes, status in ((False, "ok"), (True, "failed")):
        worker.tasks["where"] = nan_task(passes)
        worker.task_cache.clear()
        cell = evaluate_cell(
            SPEC, worker, SaeKey("m", 1, 0), "where", DeviceRecordingSAE(), Path(".")
        ).cell
        assert cell.status == status, cell.reason
        if passes:
            assert "undefined_here" in cell.reason and "not a finite number" in cell.reason
        else:
            assert cell.metrics == {"defined": 1.0}

"""Executor plumbing that needs no Ray cluster and no GPU: resources, devices, file transport."""

import pytest
import torch

from saebench.errors import ConfigError
from saebench.executors import get_executor
from saebench.executors.ray_executor import (
    read_files,
    task_resources,
    worker_env,
    write_files,
)
from saebench.models import resolve_device


def test_cuda_tasks_ask_ray_for_one_gpu_each_and_cpu_tasks_for_none():
    assert task_resources("cuda") == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("cpu", cpus_per_task=2) == {"num_cpus": 2, "num_gpus": 0}
    with pytest.raises(ConfigError, match="pass --device cuda"):
        task_resources("cuda:1")


def test_workers_see_the_plugin_and_offline_settings_of_the_driver():
    env = worker_env(
        {"SAEBENCH_PLUGIN_MODULES": "a", "HF_HUB_OFFLINE": "1", "HOME": "/root", "PYTHONPATH": "p"}
    )
    assert env == {
        "SAEBENCH_PLUGIN_MODULES": "a",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": "p",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def test_workers_of_a_cluster_get_the_drivers_cpu_numerics():
    from saebench.numerics import PORTABLE_CPU_NUMERICS

    env = worker_env({"MKL_CBWR": "COMPATIBLE,STRICT", "ATEN_CPU_CAPABILITY": "default"})
    assert env["MKL_CBWR"] == "COMPATIBLE,STRICT" and env["ATEN_CPU_CAPABILITY"] == "default"
    assert {name for name in PORTABLE_CPU_NUMERICS} <= set(worker_env(dict(PORTABLE_CPU_NUMERICS)))


def test_files_travel_as_bytes_and_land_where_they_were(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "top.json").write_text("{}")
    (tmp_path / "a" / "b" / "deep.npy").write_bytes(b"\x00\x01")
    files = read_files(tmp_path / "a")
    assert files == {"b/deep.npy": b"\x00\x01", "top.json": b"{}"}
    write_files(tmp_path / "copy", files)
    assert read_files(tmp_path / "copy") == files
    assert read_files(tmp_path / "missing") == {}


def test_unknown_executor_names_the_choices():
    with pytest.raises(ConfigError, match="choose from local, ray"):
        get_executor("dask")
    assert get_executor("local").name == "local"


def test_device_resolution_covers_the_cuda_branches_on_cpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("mps", "cpu:abc", "cuda:x", "tpu"):
        with pytest.raises(ConfigError, match="unknown device"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


def test_an_unreachable_ray_address_fails_at_once_naming_the_fix():
    import socket

    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match="nothing answers at --ray-address.*ray start --head"):
        get_executor("ray", ray_address=f"127.0.0.1:{port}")


def test_a_pinned_gpu_with_ray_is_refused_before_anything_loads():
    pytest.importorskip("ray")
    with pytest.raises(ConfigError, match="pass --device cuda"):
        get_executor("ray", device="cuda:1")


def test_a_resumed_run_with_nothing_pending_never_starts_ray():
    ray = pytest.importorskip("ray")
    from types import SimpleNamespace

    get_executor("ray").execute(SimpleNamespace(pending={}))
    assert not ray.is_initialized()


class _RayThatTakesSigterm:
    """What ray.init does to the driver: it installs a SIGTERM handler that exits."""

    def __init__(self):
        self.initialized = False

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        import signal
        import sys

        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        self.initialized = True


def test_starting_ray_keeps_the_sigterm_handler_that_marks_a_run_interrupted(monkeypatch):
    import signal

    from saebench.cli import _terminate_like_interrupt
    from saebench.executors.ray_executor import RayExecutor

    fake = _RayThatTakesSigterm()
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # _connect sets it if unset
    monkeypatch.setattr(RayExecutor, "_import_ray", staticmethod(lambda: fake))
    previous = _terminate_like_interrupt()
    try:
        ours = signal.getsignal(signal.SIGTERM)
        ray_module, started = RayExecutor()._connect()
        assert ray_module is fake and started and fake.initialized
        assert signal.getsignal(signal.SIGTERM) is ours
        with pytest.raises(KeyboardInterrupt):  # what the runner turns into "interrupted"
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)

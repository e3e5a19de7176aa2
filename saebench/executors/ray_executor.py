"""The Ray executor: training groups and task cells as Ray tasks with declared resources.

- One Ray task trains one training group (the SAEs of one method); one Ray task evaluates one
  cell. Each declares `num_cpus` (torch in that worker uses that many threads) and, on
  `--device cuda`, `num_gpus=1`: Ray then gives every task its own GPU (CUDA_VISIBLE_DEVICES), so
  groups spread over all the GPUs of a machine or a cluster.
- The activation cache entry is harvested once by the driver and opened by path in the workers:
  on a cluster, `--cache` (SAEBENCH_CACHE) must be on a filesystem every node sees.
- SAEs and task artifacts travel through Ray's object store, never through the run directory:
  the driver writes every SAE, artifact and cell through `RunDir`, so the run directory need
  only exist on the driver, and a worker that dies loses only the unit it was running.
- A worker that dies is retried `max_retries` times (Ray's system-failure retries); after that
  the unit's cells are recorded as failed with the reason. Task exceptions are not retried: they
  fail their cell deterministically, as with the local executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from saebench.errors import ConfigError
from saebench.executors.base import Execution
from saebench.fileio import atomic_directory, atomic_path
from saebench.numerics import PORTABLE_CPU_NUMERICS
from saebench.planner import DEFAULT_MAX_RETRIES
from saebench.rundir import SaeKey
from saebench.work import (
    CellOutcome,
    TrainOutcome,
    WorkerSpec,
    evaluate_cell,
    train_group,
    worker_state,
)

# What a worker must see of the driver's environment to rebuild the same world.
PASSED_ENV = (
    "SAEBENCH_LOAD_PLUGINS",
    "SAEBENCH_PLUGIN_MODULES",
    "SAEBENCH_CACHE",
    "PYTHONPATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    # Read when numpy and torch load, which a worker does after its environment is set.
    *PORTABLE_CPU_NUMERICS,
)


def task_resources(device: str, cpus_per_task: int = 1) -> dict[str, float]:
    """The Ray resources of one unit of work: CPUs always, one whole GPU on a CUDA device."""
    if device.startswith("cuda"):
        if ":" in device:
            raise ConfigError(
                f"--device {device} pins one GPU, but with --executor ray Ray assigns a GPU to "
                "every task; pass --device cuda (or restrict the GPUs with CUDA_VISIBLE_DEVICES)"
            )
        return {"num_cpus": cpus_per_task, "num_gpus": 1}
    return {"num_cpus": cpus_per_task, "num_gpus": 0}


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ) if environ is None else environ
    env = {name: environ[name] for name in PASSED_ENV if name in environ}
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def read_files(directory: Path, recursive: bool = True) -> dict[str, bytes]:
    """Every file under `directory` as {relative posix path: bytes}. Not recursive: the files
    directly in it (a saved SAE without its tasks' artifacts)."""
    if not directory.exists():
        return {}
    paths = directory.rglob("*") if recursive else directory.glob("*")
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(paths)
        if path.is_file()
    }


def write_files(directory: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        with atomic_path(directory / name) as tmp:
            tmp.write_bytes(data)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on: Ray itself retries such an address for many
    minutes without a word. ("auto" and ray:// addresses are left to Ray.)"""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ConfigError(
            f"nothing answers at --ray-address {address} ({error}). Start the head node with "
            "`ray start --head --port PORT` (it prints the address to pass), use --ray-address "
            "auto on a node of the cluster, or drop --ray-address to start a local Ray"
        ) from None


# ---------------------------------------------------------------------- in the worker


def train_group_in_worker(
    spec: WorkerSpec, keys: list[SaeKey]
) -> list[tuple[TrainOutcome, dict[str, bytes] | None]]:
    """Train the group in one pass; return each SAE's outcome and saved files (None: failed)."""
    state = worker_state(spec)
    with tempfile.TemporaryDirectory(prefix="saebench-sae-") as tmp:
        dirs = {key: Path(tmp) / f"sae{index}" for index, key in enumerate(keys)}
        return [
            (outcome, read_files(dirs[key]) if sae is not None else None)
            for key, (sae, outcome) in zip(keys, train_group(spec, state, keys, dirs))
        ]


def evaluate_in_worker(
    spec: WorkerSpec, key: SaeKey, task: str, sae_files: dict[str, bytes]
) -> tuple[CellOutcome, dict[str, bytes]]:
    """Evaluate one cell on the SAE given by its files; return the outcome and the artifacts."""
    from saebench.saved_format import load_sae

    state = worker_state(spec)
    with tempfile.TemporaryDirectory(prefix="saebench-cell-") as tmp:
        write_files(Path(tmp) / "sae", sae_files)
        sae = load_sae(Path(tmp) / "sae", state.device).eval()
        artifacts_dir = Path(tmp) / "artifacts"
        outcome = evaluate_cell(spec, state, key, task, sae, artifacts_dir)
        return outcome, read_files(artifacts_dir)


# ---------------------------------------------------------------------- in the driver


@contextlib.contextmanager
def keeping_sigterm_handler() -> Iterator[None]:
    """Restore the SIGTERM handler after the block. ray.init installs its own, which exits
    with SystemExit(15): a SIGTERM (a batch scheduler, `kill`) would then end the run without
    marking it interrupted, instead of as the CLI's handler does (like Ctrl-C)."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    try:
        yield
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_task: int = 1,
        max_retries: int = DEFAULT_MAX_RETRIES,
        device: str = "cpu",
    ):
        self.address, self.workers = address, workers
        self.cpus_per_task, self.max_retries = cpus_per_task, max_retries
        # Fail before the model loads and activations are harvested, not after.
        self.resources = task_resources(device, cpus_per_task)
        self._import_ray()
        if address:
            check_reachable(address)

    def cell_threads(self) -> int:
        return self.cpus_per_task  # each worker task sets it (saebench.work)

    @staticmethod
    def _import_ray() -> Any:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray: pip install -e '.[ray]' (or pip install ray)"
            ) from None
        return ray

    def _connect(self) -> tuple[Any, bool]:
        """(the ray module, whether this executor started Ray and so must stop it)."""
        ray = self._import_ray()
        if ray.is_initialized():
            return ray, False
        with keeping_sigterm_handler():
            self._init(ray)
        return ray, True

    def _init(self, ray: Any) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address:
            try:
                ray.init(address=self.address, log_to_driver=True)
            except ConnectionError as error:
                auth = (
                    ""
                    if os.environ.get("RAY_AUTH_MODE")
                    else " If the cluster uses token authentication (Ray's default since 2.5x), "
                    "set RAY_AUTH_MODE=token and copy its ~/.ray/auth_token to this machine."
                )
                raise ConfigError(
                    f"cannot join the Ray cluster at --ray-address {self.address}: {error}.{auth} "
                    "Or pass --ray-address auto on a node of the cluster, or drop --ray-address "
                    "to start a local Ray"
                ) from None
        else:
            # address="local": always a fresh Ray for this run. Without it ray.init() joins any
            # cluster `ray start` left on this machine, with that cluster's CPUs and settings.
            ray.init(
                address="local",
                num_cpus=self.workers or os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=True,
            )

    def execute(self, execution: Execution) -> None:
        if not execution.pending:
            return  # a finished run being resumed: no need to start Ray
        ray, started = self._connect()
        running: dict[Any, tuple[str, Any]] = {}
        try:
            self._execute(ray, execution, running)
        finally:
            # Interrupted or failed: stop what this run still has queued. A cleanup error must
            # not replace the exception in flight (a Ctrl-C must still mark the run interrupted).
            with contextlib.suppress(Exception):
                for ref in running:
                    ray.cancel(ref, force=True)
            if started:
                with contextlib.suppress(Exception):
                    ray.shutdown()

    def _execute(self, ray: Any, ex: Execution, running: dict[Any, tuple[str, Any]]) -> None:
        plan, run_dir = ex.plan, ex.plan.run_dir
        resources = self.resources
        spec = replace(ex.worker, torch_threads=self.cpus_per_task, progress=False)
        options = dict(
            **resources,
            max_retries=self.max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": worker_env()},
        )
        train = ray.remote(train_group_in_worker).options(**options)
        evaluate = ray.remote(evaluate_in_worker).options(**options)

        def submit_cells(key: SaeKey, files: dict[str, bytes]) -> None:
            files_ref = ray.put(files)
            for task in ex.pending[key]:
                running[evaluate.remote(spec, key, task, files_ref)] = ("cell", (key, task))

        for group in plan.groups:
            to_train = []
            for key in group.saes:
                if not ex.pending.get(key):
                    continue
                if run_dir.has_sae(key):
                    ex.echo(f"  {key.label}: reusing saved SAE")
                    submit_cells(key, read_files(run_dir.sae_dir(key), recursive=False))
                else:
                    to_train.append(key)
            if to_train:
                running[train.remote(spec, to_train)] = ("train", to_train)
        ex.echo(
            f"  ray: {len(running)} task(s) submitted "
            f"({', '.join(f'{k}={v:g}' for k, v in resources.items())} each)"
        )
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            kind, payload = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:
                self._record_worker_failure(ex, kind, payload, error)
                continue
            if kind == "train":
                for outcome, files in result:
                    ex.echo(f"  {outcome.message}")
                    if files is None:
                        ex.fail(
                            outcome.sae,
                            ex.pending[outcome.sae],
                            outcome.reason or outcome.message,
                            outcome.status,
                        )
                        continue
                    try:
                        with atomic_directory(run_dir.sae_dir(outcome.sae)) as tmp:
                            write_files(tmp, files)
                    except OSError as error:  # the SAE is still in memory: use it, say so
                        ex.echo(
                            f"  {outcome.sae.label}: NOT SAVED ({type(error).__name__}: {error}): "
                            "its cells run on the SAE in memory, the next run trains it again"
                        )
                    submit_cells(outcome.sae, files)
            else:
                outcome, artifacts = result
                key, task = payload
                write_files(run_dir.artifacts_dir(key, task), artifacts)
                ex.record(outcome)

    def _record_worker_failure(self, ex: Execution, kind: str, payload: Any, error: Exception):
        import ray

        if isinstance(error, ray.exceptions.RayTaskError):
            # The unit raised outside the code that turns errors into failed cells (e.g. the
            # model failed to load in the worker): report the original exception.
            cause = getattr(error, "cause", None) or error
            reason = f"ray task failed: {type(cause).__name__}: {cause}"
        else:
            first_line = (str(error).strip().splitlines() or [""])[0]
            reason = (
                f"ray worker died ({self.max_retries} retries used): "
                f"{type(error).__name__}: {first_line}"
            )
        ex.echo(f"  {reason}")
        # A dead worker (killed, out of memory) is the environment: `error`, retried next run.
        status = "failed" if isinstance(error, ray.exceptions.RayTaskError) else "error"
        if kind == "train":
            for key in payload:
                ex.fail(key, ex.pending[key], reason, status)
        else:
            key, task = payload
            ex.fail(key, [task], reason, status)

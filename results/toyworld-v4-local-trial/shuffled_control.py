"""The shuffled-SAE control of tests/test_shuffled_control.py on a v4 trial checkpoint, for the
circular task at the default preset (its day-rotation gate needs the default preset's prompts):
TopK k=8 trained, the same SAEs with their decoder rows permuted, and the random dictionary at
the same L0, three seeds each. Usage: python shuffled_control.py CHECKPOINT_DIR CACHE_DIR [RUN_DIR]
(with RUN_DIR, the SAEs that run saved are loaded instead of trained again)."""

import sys
from pathlib import Path

import torch

from saebench import plugins
from saebench.harvest import harvest
from saebench.models import resolve_model
from saebench.presets import get_preset
from saebench.rundir import RunDir, SaeKey
from saebench.saved_format import load_sae
from saebench.stats import difference_interval, verdict
from saebench.testing import shuffled_sae
from saebench.training import train_group
from saebench.work import WorkerSpec, WorkerState, evaluate_cell

SEEDS, K, PRESET, TASK = (0, 1, 2), 8, "default", "circular"


def main(checkpoint: str, cache: str, run_dir: str | None = None) -> None:
    name = f"toyworld:{checkpoint}"
    handle = resolve_model(name, device="cpu")
    preset, hook = get_preset(PRESET), handle.default_hook
    store = harvest(
        handle,
        hook,
        preset.n_train_tokens,
        preset.n_eval_tokens,
        seed=0,
        cache_dir=Path(cache),
        device=torch.device("cpu"),
        echo=lambda *_: None,
    )
    cfg = preset.train_config(store.d_in)
    if run_dir is None:
        members = [(K, seed) for seed in SEEDS]
        trained = [m.sae for m in train_group(plugins.get_method("topk"), members, store, cfg)]
        random = [m.sae for m in train_group(plugins.get_method("random"), members, store, cfg)]
    else:
        saved = RunDir(run_dir)
        trained, random = (
            [load_sae(saved.sae_dir(SaeKey(method, K, seed))).eval() for seed in SEEDS]
            for method in ("topk", "random")
        )
    saes = {
        "trained": trained,
        "shuffled": [shuffled_sae(sae, seed=seed) for sae, seed in zip(trained, SEEDS)],
        "random": random,
    }
    task = plugins.get_tasks()[TASK]
    worker = WorkerSpec(
        model=name,
        dataset=None,
        hook=hook,
        device="cpu",
        store_dir=str(store.directory),
        preset=PRESET,
        train_config=cfg,
    )
    state = WorkerState(
        model=handle,
        store=store,
        methods=plugins.get_methods(),
        tasks={TASK: task},
        device=torch.device("cpu"),
    )
    scores: dict[str, dict[str, list[float]]] = {}
    out = Path(cache) / "shuffled_artifacts"
    for kind, group in saes.items():
        for seed, sae in zip(SEEDS, group):
            key = SaeKey("random" if kind == "random" else "topk", K, seed)
            cell = evaluate_cell(worker, state, key, TASK, sae, out / kind / str(seed)).cell
            assert cell.status == "ok", (kind, cell.status, cell.reason)
            for metric, value in cell.metrics.items():
                if task.metric_info(metric).higher_is_better is not None:
                    scores.setdefault(metric, {}).setdefault(kind, []).append(value)
    for metric, values in sorted(scores.items()):
        if values["trained"] == values["shuffled"]:
            continue  # reads only the latents: the random baseline controls it
        info = task.metric_info(metric)
        line = [metric] + [f"{k} {sum(v) / len(v):.3f}" for k, v in values.items()]
        for a, b in (("trained", "random"), ("shuffled", "random")):
            d = difference_interval(values[a], values[b])
            line.append(
                f"{a}-random [{d.low:.3f}, {d.high:.3f}] "
                f"{verdict(d, info.higher_is_better, info.floor)}"
            )
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])

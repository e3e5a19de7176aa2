"""The shuffled-SAE control on the real toy models (smoke sizes, 4x the smoke training budget, three
seeds).

A trained TopK SAE whose decoder rows are permuted relative to its encoder fires the same
latents with the same values, but writes the wrong directions. So:
- a metric that does not change at all under the shuffle reads only the latents (probing,
  detection): the random baseline controls it, not this test;
- every other metric uses the decoder, and the shuffled SAE must not beat the random dictionary
  beyond seed noise (Welch 95%): a metric where it does is not measuring the dictionary, and the
  test names it.

It runs on v1 (every task that supports it) and on toy world v2 for the tasks v1 cannot score
(RAVEL and circular are uninformative at v1's hook) plus the reconstruction pair that checks the
classification itself, and on toy world v4 for circular, whose day circle and rotation are
present at its default hook.
"""

import math

import pytest
import torch

from saebench import plugins
from saebench.harvest import harvest
from saebench.presets import get_preset
from saebench.rundir import SaeKey
from saebench.stats import BETTER, difference_interval, verdict
from saebench.testing import shuffled_sae
from saebench.training import train_group
from saebench.work import WorkerSpec, WorkerState, evaluate_cell

SEEDS = (0, 1, 2)
K = 16
TRAIN_BUDGET_FACTOR = 4
# Metrics the control is known to fail until their task protocol is fixed: {metric: issue}.
EXPECTED_FAILURES: dict[str, str] = {}
# Which tasks each model runs: None is every task that supports it.
MODEL_TASKS = {
    "toyworld": None,
    "toyworld-v2": ("frontier", "loss_recovered", "ravel", "circular"),
    "toyworld-v4": ("frontier", "loss_recovered", "circular"),
}
# Decoder metrics each model must produce, or the control passed without testing them. The
# reconstruction pair checks the classification itself; on v2 the intervention metrics whose
# gates open there at smoke size must be among them (the day rotation's gate needs the
# default preset's prompts: at smoke size its raw lower bound is under 3 x chance).
REQUIRED_DECODER_METRICS = {
    "toyworld": {"frontier/fvu", "loss_recovered/delta_ce"},
    "toyworld-v2": {
        "frontier/fvu",
        "loss_recovered/delta_ce",
        "ravel/ravel_disentangle",
        "circular/month_rotation_accuracy",
    },
    # v4's operand carries the day circle at the default hook: the ranked circle score and the
    # day rotation must be tested there.
    "toyworld-v4": {
        "frontier/fvu",
        "loss_recovered/delta_ce",
        "circular/day_circle_fidelity",
        "circular/day_rotation_accuracy",
    },
}


@pytest.fixture(scope="module", params=sorted(MODEL_TASKS))
def model_name(request):
    return request.param


@pytest.fixture(scope="module")
def scores(model_name, request, tmp_path_factory):
    if model_name == "toyworld":
        handle = request.getfixturevalue("toy_handle")  # the session's copy
    else:
        handle = plugins.get_models()[model_name].load(device="cpu")
    preset = get_preset("smoke")
    hook = handle.default_hook
    store = harvest(
        handle,
        hook,
        preset.n_train_tokens,
        preset.n_eval_tokens,
        seed=0,
        cache_dir=tmp_path_factory.mktemp("shuffled_cache"),
        device=torch.device("cpu"),
        echo=lambda *_: None,
    )
    # 4x the smoke budget: at 1x one seed in three of TopK on v4 found the day plane only partly
    # (day rotation 0.36 against 0.84 and 0.81), too weak a trained SAE for the control.
    budget = TRAIN_BUDGET_FACTOR * preset.train_tokens_per_sae
    cfg = preset.train_config(store.d_in, total_tokens=budget)
    members = [(K, seed) for seed in SEEDS]
    trained = train_group(plugins.get_method("topk"), members, store, cfg)
    random = train_group(plugins.get_method("random"), members, store, cfg)
    saes = {
        "trained": [m.sae for m in trained],
        "shuffled": [shuffled_sae(m.sae, seed=m.seed) for m in trained],
        "random": [m.sae for m in random],
    }
    wanted = MODEL_TASKS[model_name]
    tasks = {
        n: t
        for n, t in plugins.get_tasks().items()
        if t.supports(handle, {}) is None and (wanted is None or n in wanted)
    }
    assert wanted is None or set(wanted) == set(tasks), (wanted, sorted(tasks))
    worker = WorkerSpec(
        model=model_name,
        dataset=None,
        hook=hook,
        device="cpu",
        store_dir=str(store.directory),
        preset="smoke",
        train_config=cfg,
    )
    state = WorkerState(
        model=handle,
        store=store,
        methods=plugins.get_methods(),
        tasks=tasks,
        device=torch.device("cpu"),
    )
    out: dict[str, dict[str, list[float]]] = {}
    artifacts = tmp_path_factory.mktemp("shuffled_artifacts")
    for name, group in saes.items():
        for seed, sae in zip(SEEDS, group):
            for task in tasks:
                key = SaeKey("random" if name == "random" else "topk", K, seed)
                cell = evaluate_cell(worker, state, key, task, sae, artifacts / name / task).cell
                assert cell.status in ("ok", "uninformative"), (name, task, cell.reason)
                for metric, value in cell.metrics.items():
                    info = tasks[task].metric_info(metric)
                    if info.higher_is_better is not None:
                        out.setdefault(f"{task}/{metric}", {}).setdefault(name, []).append(value)
    return out


def uses_decoder(values: dict[str, list[float]]) -> bool:
    return any(
        not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        for a, b in zip(values["trained"], values["shuffled"])
    )


@pytest.mark.slow  # three SAEs of three kinds through every task on the real toy model
def test_the_shuffled_sae_scores_no_better_than_random_on_every_decoder_metric(scores, model_name):
    from saebench import plugins as registry

    tasks = registry.get_tasks()
    decoder_metrics = {name: v for name, v in scores.items() if uses_decoder(v)}
    missing = REQUIRED_DECODER_METRICS[model_name] - set(decoder_metrics)
    assert not missing, "decoder metrics not produced (or not moved by the shuffle): " + ", ".join(
        f"{name} {scores.get(name)}" for name in sorted(missing)
    )
    failing = []
    for name, values in sorted(decoder_metrics.items()):
        task, metric = name.split("/", 1)
        info = tasks[task].metric_info(metric)
        difference = difference_interval(values["shuffled"], values["random"])
        beats = verdict(difference, info.higher_is_better, info.floor) == BETTER
        if beats and metric not in EXPECTED_FAILURES:
            failing.append(
                f"{name}: shuffled {sum(values['shuffled']) / 3:.4g} vs random "
                f"{sum(values['random']) / 3:.4g} (Δ [{difference.low:.3g}, {difference.high:.3g}])"
            )
    assert not failing, "metrics that do not measure the dictionary: " + "; ".join(failing)


# Where a task's metrics are present at the hook, the control must also be able to separate
# there: (metric, higher is better) the trained SAE must beat random and its shuffle on.
SEPARATING_METRICS = {
    "toyworld-v4": (
        ("circular/day_circle_fidelity", True),
        ("circular/day_rotation_accuracy", True),
    )
}


@pytest.mark.slow
def test_the_trained_sae_beats_random_on_reconstruction(scores, model_name):
    # The control is only meaningful if the same metrics can tell a trained SAE from random,
    # and from itself with its decoder shuffled.
    reconstruction = (("frontier/fvu", False), ("loss_recovered/delta_ce", False))
    for name, higher in reconstruction + SEPARATING_METRICS.get(model_name, ()):
        values = scores[name]
        for other in ("random", "shuffled"):
            difference = difference_interval(values["trained"], values[other])
            assert verdict(difference, higher) == BETTER, (name, other, values, difference)

"""A method swept at one knob against the baselines' L0 curves, for any metric: each baseline
interpolated (log L0) at the method's mean L0, per seed; the method's own per-seed values; the
Welch 95% interval of the difference and its verdict at the metric's floor (none for a
descriptive metric). `saebench run` does the same for the headline metrics
(saebench.stats.compare_at_one_l0, in comparisons.csv); this reads the descriptive ones too
(SAEBench's unbounded mask, the latent make-up) and a baseline swept at one knob, read as is
when its L0 is within 1% of the method's.
Usage: python single_point.py RUN_DIR METHOD METRIC [METRIC ...]"""

import sys
from pathlib import Path

import pandas as pd

from saebench import plugins
from saebench.stats import compare_at_one_l0, difference_interval, seed_interval, verdict

BASELINES = ("random", "pca")


def same_l0(frame: pd.DataFrame, baseline: str, metric: str, l0: float) -> list[float]:
    """A baseline swept at one knob (no curve to interpolate): its per-seed values when its L0
    is within 1% of the method's."""
    rows = frame[frame.method == baseline]
    own_l0 = pd.to_numeric(rows[rows.metric == "l0"].value).mean()
    if not abs(own_l0 - l0) <= 0.01 * l0:
        return []
    return pd.to_numeric(rows[rows.metric == metric].sort_values("seed").value).tolist()


def main(run_dir: str, method: str, metrics: list[str]) -> None:
    frame = pd.read_csv(Path(run_dir) / "results.csv")
    mine = frame[frame.method == method]
    l0 = float(pd.to_numeric(mine[mine.metric == "l0"].value).mean())
    print(
        f"{run_dir}: {method} at L0 {l0:.3f}; baselines read there (on their curves; as is when swept at one knob)"
    )
    tasks = plugins.get_tasks()
    for metric in metrics:
        info = tasks[mine[mine.metric == metric].task.iloc[0]].metric_info(metric)
        higher = info.higher_is_better
        values = pd.to_numeric(mine[mine.metric == metric].sort_values("seed").value).tolist()
        own = seed_interval(values)
        line = f"  {metric}: {own.mean:.3f} [{own.low:.3f}, {own.high:.3f}] (seeds "
        line += " / ".join(f"{v:.3f}" for v in values) + ")"
        # The suite's own rule (a baseline's curve read at the method's L0, or at a range end
        # within 1% of it); a one-knob baseline as is.
        suite = {
            c.baseline: c
            for c in compare_at_one_l0(frame, metric, method, BASELINES, higher is not False)
        }
        for baseline in BASELINES:
            if baseline in suite:
                theirs_mean, diff = suite[baseline].baseline_value.mean, suite[baseline].difference
            else:
                theirs = same_l0(frame, baseline, metric, l0)
                if not theirs:
                    continue
                theirs_mean, diff = seed_interval(theirs).mean, difference_interval(values, theirs)
            judged = "descriptive" if higher is None else verdict(diff, higher, info.floor)
            line += (
                f"; {baseline} {theirs_mean:.3f}, Δ {diff.mean:+.3f} "
                f"[{diff.low:+.3f}, {diff.high:+.3f}] {judged}"
            )
        print(line)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

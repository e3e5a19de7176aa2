"""The matched-L0 tables of docs/toyworld.md from a run's comparisons.csv: each method's value
[95% interval over seeds] at the matched L0s, the random and PCA values there, and the run's
verdicts. Usage: python tables.py COMPARISONS_CSV METRIC [METRIC ...]"""

import sys

import pandas as pd


def table(comparisons: pd.DataFrame, metric: str) -> str:
    rows = comparisons[comparisons.metric == metric]
    lines = [
        f"**{metric}**",
        "",
        "| method | L0 | value [95%] | random | verdict | PCA | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, l0), group in rows.groupby(["method", "l0"], sort=True):
        by = group.set_index("baseline")
        first = group.iloc[0]
        cells = [
            method,
            f"{l0:.3g}",
            f"{first.method_mean:.3f} [{first.method_low:.3f}, {first.method_high:.3f}]",
        ]
        for baseline in ("random", "pca"):
            if baseline in by.index:
                cells += [f"{by.loc[baseline].baseline_mean:.3f}", by.loc[baseline].verdict]
            else:
                cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    data = pd.read_csv(sys.argv[1])
    print("\n\n".join(table(data, metric) for metric in sys.argv[2:]))

"""Print saebench vs SAELens training-step throughput as a markdown table (stdlib only).

    python scripts/saelens/compare.py ours.json theirs.json

ours.json is `saebench bench --json`'s output, theirs.json `saelens_step_bench.py --json`'s (told
apart by its "library" key, so several files of ours, in any order, may be given). Rows
are matched on (method, d_in, d_sae, batch_size, k), taking our group_size == 1 rows only (SAELens
trains one SAE per step). ratio = saebench tokens/s ÷ SAELens tokens/s (> 1: saebench is faster).
Where our row has a roofline fraction, SAELens's fraction of the same roofline is
ours × (theirs ÷ ours tokens/s): the same dense-FLOP ideal time over their step time.
"""

from __future__ import annotations

import argparse
import json
import sys


def key(row: dict) -> tuple:
    k = row.get("k")
    return (
        row["method"],
        int(row["d_in"]),
        int(row["d_sae"]),
        int(row["batch_size"]),
        None if k is None else int(k),
    )


def shape_text(row: dict) -> str:
    text = f"d={row['d_in']} m={row['d_sae']} B={row['batch_size']}"
    return text + (f" k={row['k']}" if row.get("k") is not None else "")


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_fraction(value) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" if value >= 0.01 else f"{value * 100:.2g}%"


def threads_of(data: dict):
    return data.get("threads", (data.get("machine") or {}).get("threads"))


def merge_ours(files: list[dict]) -> dict:
    """Several `saebench bench --json` outputs as one (machine of the first, all steps)."""
    merged = {"machine": dict(files[0].get("machine") or {}), "steps": []}
    for data in files:
        if threads_of(data) != threads_of(files[0]):
            merged["machine"]["threads"] = "mixed"
        merged["steps"] += data.get("steps", [])
    return merged


def compare(ours: dict, theirs: dict) -> tuple[list[str], int]:
    ours_rows = {}
    for row in ours.get("steps", []):
        if int(row.get("group_size", 1)) == 1:
            ours_rows.setdefault(key(row), row)
    lines = [
        f"saebench: {threads_of(ours)} threads; SAELens {theirs.get('version', '?')} "
        f"(torch {theirs.get('torch', '?')}): {threads_of(theirs)} threads",
        "",
        "| method | shape | saebench tok/s | SAELens tok/s | ratio | saebench roofline "
        "| SAELens roofline |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    matched, missing = 0, []
    for row in theirs.get("steps", []):
        mine = ours_rows.get(key(row))
        if mine is None:
            missing.append(row)
            continue
        matched += 1
        ours_tps, theirs_tps = float(mine["tokens_per_second"]), float(row["tokens_per_second"])
        roof = mine.get("roofline_fraction")
        their_roof = None if roof is None else roof * theirs_tps / ours_tps
        lines.append(
            f"| {row['method']} | {shape_text(row)} | {fmt_rate(ours_tps)} | {fmt_rate(theirs_tps)} "
            f"| {ours_tps / theirs_tps:.2f}× | {fmt_fraction(roof)} | {fmt_fraction(their_roof)} |"
        )
    if threads_of(ours) != threads_of(theirs):
        lines += [
            "",
            "warning: the two runs used different thread counts; the ratio is not like for like.",
        ]
    if missing:
        lines += ["", "SAELens rows with no saebench row (group_size 1) to compare:"]
        lines += [f"- {row['method']} {shape_text(row)}" for row in missing]
    return lines, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files",
        nargs="+",
        metavar="JSON",
        help="saebench bench --json output(s) and one saelens_step_bench.py --json output",
    )
    args = parser.parse_args(argv)
    ours_files, theirs_files = [], []
    for path in args.files:
        with open(path) as f:
            data = json.load(f)
        (theirs_files if data.get("library") == "sae_lens" else ours_files).append(data)
    if len(theirs_files) != 1 or not ours_files:
        parser.error(
            f"need one SAELens file and at least one saebench file; got {len(theirs_files)} "
            f"SAELens and {len(ours_files)} saebench"
        )
    lines, matched = compare(merge_ours(ours_files), theirs_files[0])
    print("\n".join(lines))
    if not matched:
        print("no rows matched on (method, d_in, d_sae, batch_size, k)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

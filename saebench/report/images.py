"""The run's PNG plots (RUN/plots/, drawn by the tasks' own plot functions) embedded in the
page: scaled to MAX_WIDTH pixels and re-encoded with a 256-colour palette (plots are flat
colours: a few tens of KB each), within IMAGE_BUDGET bytes for all of them; a plot past the
budget is named with its file instead (the page never links to a file)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from saebench.report.markup import image
from saebench.rundir import RunDir

MAX_WIDTH = 960
IMAGE_BUDGET = 1_500_000  # bytes of embedded image data per page


@dataclass(frozen=True)
class EmbeddedPlot:
    name: str
    html: str  # the inline <img>; empty when left out
    note: str  # its size, or why it was left out


def compress_png(data: bytes, max_width: int = MAX_WIDTH) -> bytes:
    """`data` scaled down to max_width and palette-encoded, or as it was when that is smaller."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        converted = picture.convert("RGB")
    if converted.width > max_width:
        height = round(converted.height * max_width / converted.width)
        converted = converted.resize((max_width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # Fast octree quantisation without zlib's optimize pass: ~10x faster than the defaults,
    # within ~10% of their size on plots.
    converted.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, format="PNG")
    return min(out.getvalue(), data, key=len)


def embedded_plots(run_dir: RunDir, budget: int = IMAGE_BUDGET) -> list[EmbeddedPlot]:
    """Every PNG in the run's plots folder, in name order, embedded while the budget lasts."""
    if not run_dir.plots_dir.is_dir():
        return []
    plots, spent = [], 0
    for path in sorted(run_dir.plots_dir.glob("*.png")):
        try:
            data = compress_png(path.read_bytes())
        except (OSError, ValueError) as error:  # a truncated or foreign file: say so, go on
            plots.append(EmbeddedPlot(path.name, "", f"not readable ({error})"))
            continue
        if spent + len(data) > budget:
            plots.append(
                EmbeddedPlot(
                    path.name,
                    "",
                    f"left out: the page's {budget / 1e6:.1f} MB image budget is spent "
                    f"(see plots/{path.name} in the run directory)",
                )
            )
            continue
        spent += len(data)
        plots.append(
            EmbeddedPlot(
                path.name, image(data, "image/png", path.stem), f"{len(data) / 1e3:.0f} KB"
            )
        )
    return plots

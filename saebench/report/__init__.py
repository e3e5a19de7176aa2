"""`saebench report`: one self-contained HTML page per run (saebench.report.build), written at
the end of every run and on demand.

Modules: data (what is read from the run directory, which SAEs get dashboards), latents (the
cached per-latent dashboards), groundtruth (the label each latent fires on, held out), compare
(Hungarian matching of two SAEs' decoders), charts (inline SVG), markup (escaped HTML pieces),
images (the run's PNG plots, inlined), assets (the page's CSS and script), page (the sections),
cli (the command). docs/report.md describes the page.
"""

from saebench.report.build import (
    REPORT_NAME,
    ReportResult,
    build_report,
    end_of_run_report,
    report_path,
)

__all__ = ["REPORT_NAME", "ReportResult", "build_report", "end_of_run_report", "report_path"]

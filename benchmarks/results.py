"""Write docs/results.md from a finished run: per factor, every model and baseline on the test subjects.

    .venv/bin/python benchmarks/results.py                          # after `make run`, in the repository root
    .venv/bin/python benchmarks/results.py --workdir W --output W/results.md

Reads `results/metrics/summary.csv`, `results/split.tsv` and `results/models/*/train_log.csv` (and the
report's `provenance.json`, where there is one, for the run's commit and date) under --workdir.
"""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import pandas as pd

from mrisr.evaluation.scoring import method_summary
from mrisr.provenance import git_commit

ROOT = Path(__file__).resolve().parent.parent


def signed(value: float) -> str:
    return "" if pd.isna(value) else f"{round(value, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def plain(value: float, digits: int = 3) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def training_seconds(results: Path) -> dict[str, float]:
    """Wall seconds of each model's last training, from the last row of its training log."""
    return {log.parent.name: float(pd.read_csv(log)["seconds"].iloc[-1])
            for log in sorted(results.glob("models/*/train_log.csv"))}


def run_identity(results: Path, workdir: Path) -> tuple[str, str]:
    """The run's commit and date: from the report's provenance, else the work folder's git and the summary's time."""
    provenance = results / "report" / "provenance.json"
    data = json.loads(provenance.read_text()) if provenance.is_file() else {}
    commit = data.get("git_commit") or git_commit(workdir if (workdir / ".git").exists() else ROOT)
    stamp = datetime.datetime.fromtimestamp((results / "metrics" / "summary.csv").stat().st_mtime, datetime.UTC)
    return commit, data.get("created") or stamp.strftime("%Y-%m-%d %H:%M UTC")


def factor_table(summary: pd.DataFrame, seconds: dict[str, float]) -> list[str]:
    lines = [("| method | kind | brain PSNR (dB) | Δ vs cubic | Δ vs back-projection | SSIM in brain "
             "| LR-consistency (dB) | sd–error corr. | training (s) |"), "|---" * 9 + "|"]
    for row in summary.sort_values("psnr_brain_mean", ascending=False).itertuples():
        train = seconds.get(row.method)
        psnr = f"{row.psnr_brain_mean:.2f}" + (f" ± {row.psnr_brain_sd:.2f}" if row.n_subjects > 1 else "")
        lines.append(" | ".join([
            f"| {row.method}", str(row.kind), psnr,
            signed(row.psnr_brain_vs_cubic), signed(row.psnr_brain_vs_back_projection), plain(row.ssim_brain_mean),
            plain(row.lr_psnr_mean, 1), plain(getattr(row, "uncertainty_error_corr_mean", float("nan"))),
            "" if train is None else f"{train:.0f}"]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT,
                        help="folder the workflow ran in (default: the repository)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--title", default="Results of the last run", help="first heading of the page")
    parser.add_argument("--note", default="", help="a paragraph under the heading: which run, on what machine")
    args = parser.parse_args()
    results = args.workdir / "results"
    table = pd.read_csv(results / "metrics" / "summary.csv", dtype={"factor": str})
    split = pd.read_csv(results / "split.tsv", sep="\t")
    commit, date = run_identity(results, args.workdir)
    seconds = training_seconds(results)
    tests = split[split["role"] == "test"]["subject"].tolist()
    lines = [f"# {args.title}", "",
             f"Written by `benchmarks/results.py` from the run in `{args.workdir}`; do not edit by hand, rerun it.", "",
             *([args.note, ""] if args.note else []),
             f"- date: {date}", f"- commit: `{commit}`", f"- test subjects: {', '.join(tests)}",
             f"- training subjects: {', '.join(split[split['role'] == 'train']['subject'])}",
             "- training (s): " + ", ".join(f"{model} {value:.0f}" for model, value in seconds.items()), "",
             ("Brain PSNR is the mean ± sd over the test subjects; Δ is the mean paired difference to the "
              "cubic-spline and back-projection baselines on the same voxels; LR-consistency is the PSNR of the "
              "estimate degraded again against the LR scan; sd–error corr. is the correlation of the samples' sd "
              "with the absolute error."),
             ""]
    for factor, rows in method_summary(table).groupby("factor", sort=False):
        lines += [f"## Factor {factor}", ""] + factor_table(rows, seconds) + [""]
    lines += [("How these figures came to be, and older runs: [decisions](decisions/README.md), "
              "[experiments log](experiments.md)."), ""]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""The HTML report: one self-contained page (figures embedded) that opens from disk."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import jinja2
import pandas as pd
import yaml

from .figures import metric_strip
from .io import atomic_path, write_json
from .metrics import method_summary
from .qc import table as qc_table

log = logging.getLogger(__name__)

METRIC_LABELS = {
    "psnr_brain": "PSNR brain (dB)", "ssim_brain": "SSIM brain",
    "psnr_whole": "PSNR whole (dB)", "ssim_whole": "SSIM whole", "hf_error_brain": "HF error brain",
}


def embed_png(path: str | Path) -> str:
    """A PNG as a data URI, so the page needs no files beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _mean_sd(summary: pd.DataFrame, metric: str, digits: int) -> list[str]:
    return [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_sd"])]


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd per method over test subjects, with the paired difference to cubic spline."""
    summary = method_summary(table)
    shown = pd.DataFrame({"method": summary["method"], "subjects": summary["n_subjects"]})
    for metric, digits in (("psnr_brain", 2), ("ssim_brain", 4)):
        shown[METRIC_LABELS[metric]] = _mean_sd(summary, metric, digits)
        shown[f"Δ vs cubic ({metric.split('_')[0].upper()})"] = [f"{v:+.{digits}f}" for v in summary[f"{metric}_vs_cubic"]]
    for metric, digits in (("psnr_whole", 2), ("ssim_whole", 4), ("hf_error_brain", 4)):
        shown[METRIC_LABELS[metric]] = _mean_sd(summary, metric, digits)
    return shown


def test_independence_note(split: pd.DataFrame) -> str:
    """Say plainly whether any test subject shares its real brain with a training subject."""
    train_brains = set(split.loc[split["role"].isin(["train", "val"]), "real_volume"])
    shared = split[(split["role"] == "test") & split["real_volume"].isin(train_brains)]
    if shared.empty:
        brains = ", ".join(sorted(set(split.loc[split["role"] == "test", "real_volume"])))
        return f"Test subjects come from brains never used in training or validation ({brains})."
    return ("Caution: test subject(s) " + ", ".join(shared["subject"]) + " are derived from a brain also used "
            "in training; their figures overstate performance on new brains.")


def build_report(
    summary_csv: str, split_tsv: str, train_log_csv: str, curves_png: str, validation_png: str,
    panel_pngs: dict[str, str], qc_pngs: dict[str, str], timing_csvs: list[str],
    qc_csvs: list[str], excluded_qc_csvs: dict[str, str], config: dict, provenance: dict, html_path: str, provenance_path: str, work_dir: str,
) -> None:
    """The ``report`` stage: render the page and write the provenance record beside it."""
    table = pd.read_csv(summary_csv)
    split = pd.read_csv(split_tsv, sep="\t").fillna("")
    train_log = pd.read_csv(train_log_csv)
    timing = pd.concat([pd.read_csv(path) for path in timing_csvs]).pivot(
        index="subject", columns="step", values="seconds").rename_axis(columns=None)  # no stray "step" header
    timing["total"] = timing.sum(axis=1)
    strips = {}
    for metric in ("psnr_brain", "ssim_brain"):
        strip_png = Path(work_dir) / f"{metric}.png"
        metric_strip(table, metric, str(strip_png))
        strips[METRIC_LABELS[metric]] = embed_png(strip_png)
    per_subject = {
        subject: rows.drop(columns="subject").rename(columns=METRIC_LABELS)
        for subject, rows in table.groupby("subject", sort=False)
    }
    environment = jinja2.Environment(loader=jinja2.PackageLoader("mrisr", "templates"), autoescape=True)
    html = environment.get_template("report.html.j2").render(
        summary=summary_table(table).to_html(index=False, classes="table", border=0),
        independence=test_independence_note(split),
        strips=strips,
        per_subject={s: t.to_html(index=False, classes="table", border=0, float_format="%.4f", na_rep="")
                     for s, t in per_subject.items()},
        panels={subject: embed_png(path) for subject, path in panel_pngs.items()},
        curves=embed_png(curves_png),
        validation=embed_png(validation_png),
        train_summary={"steps": int(train_log["step"].iloc[-1]), "seconds": float(train_log["seconds"].iloc[-1]),
                       "final_loss": float(train_log["loss"].iloc[-1])},
        split=split.to_html(index=False, classes="table", border=0),
        timing=timing.round(1).reset_index().to_html(index=False, classes="table", border=0),
        qc={subject: embed_png(path) for subject, path in qc_pngs.items()},
        qc_table=qc_table(qc_csvs, excluded_qc_csvs, split, config["preprocess"]["qc"]).to_html(
            index=False, classes="table", border=0),
        qc_thresholds=config["preprocess"]["qc"],
        excluded=excluded_qc_csvs,
        config=yaml.safe_dump(config, sort_keys=False),
        provenance=provenance,
    )
    with atomic_path(html_path) as tmp:
        tmp.write_text(html)
    write_json({**provenance, "config": config}, provenance_path)
    log.info("report of %d test subject(s) -> %s", len(per_subject), html_path)

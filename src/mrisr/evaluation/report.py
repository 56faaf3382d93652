"""The HTML report: one self-contained page (figures embedded) that opens from disk."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from ..pairs.degrade import describe
from ..preprocess.qc import table as qc_table
from ..figures import reliability_figure
from .figures import calibration_figure, metric_strip
from .scoring import method_summary
from ..io import atomic_path, write_json

log = logging.getLogger(__name__)

METRIC_LABELS = {
    "psnr_brain": "PSNR brain (dB)", "ssim_brain": "SSIM brain", "psnr_whole": "PSNR whole (dB)",
    "ssim_whole": "SSIM whole", "hf_error_brain": "HF error brain", "lr_psnr": "LR-consistency (dB)",
    "dice_csf": "Dice CSF", "dice_gm": "Dice GM", "dice_wm": "Dice WM",
    "uncertainty_error_corr": "sd–|error| corr",
}
STRIP_METRICS = ["psnr_brain", "ssim_brain", "hf_error_brain", "lr_psnr", "dice_gm", "dice_wm"]
DIGITS = {"psnr": 2, "lr_psnr": 1, "ssim": 4, "hf": 4, "dice": 3, "uncertainty": 2}


def embed_png(path: str | Path) -> str:
    """A PNG as a data URI, so the page needs no files beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _digits(metric: str) -> int:
    return DIGITS["lr_psnr"] if metric == "lr_psnr" else DIGITS[metric.split("_")[0]]


def summary_table(table: pd.DataFrame, assumed: str | None = None) -> pd.DataFrame:
    """Mean ± sd per factor and method over test subjects, with paired differences to cubic and back-projection
    (labelled with the degradation it ``assumed``, when given)."""
    summary = method_summary(table)
    methods = summary["method"].replace({"back_projection": f"back_projection (assumes {assumed})"} if assumed else {})
    shown = pd.DataFrame({"factor": "×" + summary["factor"], "method": methods, "kind": summary["kind"],
                          "subjects": summary["n_subjects"]})
    for metric in [m for m in METRIC_LABELS if f"{m}_mean" in summary]:
        digits = _digits(metric)
        shown[METRIC_LABELS[metric]] = [
            "" if np.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"
            for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_sd"])]
        if metric in ("psnr_brain", "ssim_brain"):
            for reference, short in (("cubic", "cubic"), ("back_projection", "BP")):
                shown[f"Δ {metric.split('_')[0].upper()} vs {short}"] = [
                    "" if np.isnan(v) else f"{v:+.{digits}f}" for v in summary[f"{metric}_vs_{reference}"]]
    return shown


def summary_blocks(table: pd.DataFrame, config: dict) -> list[dict[str, str]]:
    """One summary table per degradation the test LRs were made by, in the order of evaluate.degradations, each
    with a heading saying what made the LR and what the models and back-projection assume."""
    own = config["pairs"]["degradation"]
    if "degradation" not in table:  # a summary written before the column existed: all made by the pairs' one
        table = table.assign(degradation=own)
    order = [name for name in config["evaluate"]["degradations"] if name in set(table["degradation"])]
    blocks = []
    for name in order + sorted(set(table["degradation"]) - set(order)):
        made_by = describe(config["degradations"][name]) if name in config["degradations"] else "unknown"
        if name == own:
            heading = f"LR by {name} ({made_by}): the degradation the models were made for and assume"
        else:
            heading = (f"LR by {name} ({made_by}); the models' data consistency and back-projection assume {own} "
                       f"({describe(config['degradations'][own])})")
        rows = table[table["degradation"] == name].drop(columns="degradation")
        blocks.append({"heading": heading, "table": _html(summary_table(rows, own))})
    return blocks


def test_independence_note(split: pd.DataFrame) -> str:
    """Say plainly whether any test subject shares its real brain with a training subject."""
    train_brains = set(split.loc[split["role"].isin(["train", "val"]), "real_volume"])
    shared = split[(split["role"] == "test") & split["real_volume"].isin(train_brains)]
    if shared.empty:
        brains = ", ".join(sorted(set(split.loc[split["role"] == "test", "real_volume"])))
        return f"Test subjects come from brains never used in training or validation ({brains})."
    return ("Caution: test subject(s) " + ", ".join(shared["subject"]) + " are derived from a brain also used "
            "in training; their figures overstate performance on new brains.")


def models_table(models: dict[str, dict], train_logs: dict[str, str]) -> pd.DataFrame:
    """One row per model: what it is, the factors, its budget, and how long it trained."""
    rows = []
    for name, model in models.items():
        row = {"model": name, "kind": model["kind"], "factor": model.get("factor"), "source": "trained here"}
        if "pretrained" in model:
            row["source"] = f"pretrained: {model['pretrained']}"
        elif model["kind"] == "cascade":
            row["source"] = "stages: " + " → ".join(model["stages"])
        else:
            network, train = model["network"], model["train"]
            row.update(network=f"base {network['base_channels']}, mult {network['channel_mult']}",
                       steps=train["steps"], batch=train["batch_size"], patch=str(train["patch_size"]))
        if name in train_logs:
            row["training (s)"] = round(float(pd.read_csv(train_logs[name])["seconds"].iloc[-1]))
        if "sampler" in model:
            sampler = model["sampler"]
            row["sampler"] = (f"DDIM {sampler['steps']} × {sampler['n_samples']}"
                              + (f", mirrored along axes {sampler['flip_axes']}" if sampler["flip_axes"] else "")
                              + (", data-consistent" if sampler["data_consistency"] else "")
                              + (f" assuming {sampler['consistency_degradation']['name']}"
                                 if sampler["data_consistency"] and sampler.get("consistency_degradation") else ""))
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _html(table: pd.DataFrame, **options) -> str:
    return table.to_html(index=False, classes="table", border=0, na_rep="", **options)


def build_report(
    summary_csv: str, split_tsv: str, train_logs: dict[str, str], curves: dict[str, str], validation: dict[str, str],
    panels: dict[str, dict[str, str]], calibration: dict[str, dict[str, str]],
    uncertainty: dict[str, dict[str, str]], reliability: dict[str, dict[str, str]], qc_pngs: dict[str, str],
    timing_csvs: list[str], qc_csvs: list[str], excluded_qc_csvs: dict[str, str], config: dict,
    models: dict[str, dict], provenance: dict, html_path: str, provenance_path: str, work_dir: str,
) -> None:
    """The ``report`` stage: render the page and write the provenance record beside it.

    ``panels`` map a test subject to its figures (by factor);
    ``calibration``, ``uncertainty`` and ``reliability`` to its tables of
    each model (:mod:`mrisr.evaluation.scoring`).
    """
    table = pd.read_csv(summary_csv, dtype={"factor": str})
    split = pd.read_csv(split_tsv, sep="\t").fillna("")
    timing = pd.concat([pd.read_csv(path) for path in timing_csvs]).pivot(
        index="subject", columns="step", values="seconds").rename_axis(columns=None)  # no stray "step" header
    timing["total"] = timing.sum(axis=1)
    strips = {}
    # The strips show the pairs' own degradation (the first summary block): one dot per subject and method.
    own = table[table["degradation"] == config["pairs"]["degradation"]] if "degradation" in table else table
    for metric in [m for m in STRIP_METRICS if m in table]:
        strip_png = Path(work_dir) / f"{metric}.png"
        metric_strip(own, metric, METRIC_LABELS[metric], str(strip_png))
        strips[METRIC_LABELS[metric]] = embed_png(strip_png)
    subjects = {}
    for subject, rows in table.groupby("subject", sort=False):
        shown = rows.drop(columns="subject").rename(columns=METRIC_LABELS)
        calibration_uri = None
        tables = {model: pd.read_csv(path) for model, path in calibration.get(subject, {}).items()
                  if rows.loc[rows["method"] == model, "uncertainty_error_corr"].notna().any()}
        if tables:
            calibration_png = Path(work_dir) / f"calibration_{subject}.png"
            calibration_figure(tables, f"test subject {subject}", str(calibration_png))
            calibration_uri = embed_png(calibration_png)
        subjects[subject] = {"table": _html(shown, float_format="%.4f"), "calibration": calibration_uri,
                             **uncertainty_parts(subject, uncertainty.get(subject, {}), reliability.get(subject, {}),
                                                 work_dir),
                             "panels": {factor: embed_png(path) for factor, path in panels.get(subject, {}).items()}}
    environment = jinja2.Environment(loader=jinja2.PackageLoader("mrisr.evaluation", "templates"), autoescape=True)
    html = environment.get_template("report.html.j2").render(
        summaries=summary_blocks(table, config),
        independence=test_independence_note(split),
        strips=strips,
        subjects=subjects,
        models=_html(models_table(models, train_logs)),
        training={model: {"curves": embed_png(curves[model]), "validation": embed_png(validation[model])}
                  for model in curves},
        split=_html(split),
        timing=_html(timing.round(1).reset_index()),
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
    log.info("report of %d test subject(s) and %d model(s) -> %s", len(subjects), len(models), html_path)


def uncertainty_parts(subject: str, uncertainty: dict[str, str], reliability: dict[str, str],
                      work_dir: str) -> dict[str, str | None]:
    """A test subject's uncertainty table (every model's calibrated scale beside the raw sd and the proxies) and
    its reliability diagram (one line per model's calibrated intervals, dashed for its raw sd read as Gaussian)."""
    if not uncertainty:
        return {"uncertainty": None, "reliability": None}
    table = pd.concat([pd.read_csv(path).assign(model=model) for model, path in uncertainty.items()])
    columns = ["model", "predictor", "spearman", "auroc_worst10"] + [
        c for c in table if c.startswith(("coverage_", "width_"))]
    curves = {}
    for model, path in reliability.items():
        for predictor, rows in pd.read_csv(path).groupby("predictor", sort=False):
            curves[f"{model}: {predictor}"] = rows
    reliability_png = Path(work_dir) / f"reliability_{subject}.png"
    reliability_figure(curves, f"test subject {subject}", str(reliability_png))
    return {"uncertainty": _html(table[columns], float_format="%.3f"), "reliability": embed_png(reliability_png)}


def build_apply_report(sidecars: list[str], panels: list[str], jobs: list[list[str]], config: dict,
                       provenance: dict, html_path: str, description_paths: list[str]) -> None:
    """The apply stage's page: a table of every scan and model, then each scan's slices; and the
    ``dataset_description.json`` of each model's BIDS-derivatives dataset.

    ``sidecars`` and ``panels`` run over ``jobs`` (``[model, scan, why this model]``, why empty when every model
    ran on every scan); ``description_paths`` over their models, in that order.
    """
    import json

    records = [json.loads(Path(path).read_text()) for path in sidecars]
    names = [(model, scan) for model, scan, _ in jobs]
    picked = {(model, scan): why for model, scan, why in jobs if why}
    table = pd.DataFrame([{
        "scan": scan, "model": model, **({"why this model": picked[model, scan]} if picked else {}),
        "input voxel (mm)": record["input_voxel_mm"],
        "output voxel (mm)": record["output_voxel_mm"], "skull strip": record["skull_strip"],
        "LR-consistency (dB)": f"{record['lr_psnr']:.1f} (cubic {record['lr_psnr_cubic']:.1f})",
        "corr. with cubic": f"{record['correlation']:.3f}", "seconds": record["seconds"]["total"],
        "skull-strip evidence": record["skull_strip_evidence"],
    } for record, (model, scan) in zip(records, names)])
    figures: dict[str, dict[str, str]] = {}
    for panel, (model, scan) in zip(panels, names):
        figures.setdefault(scan, {})[model] = embed_png(panel)
    environment = jinja2.Environment(loader=jinja2.PackageLoader("mrisr.evaluation", "templates"), autoescape=True)
    html = environment.get_template("apply.html.j2").render(
        table=_html(table), scans=figures, config=yaml.safe_dump(config, sort_keys=False), provenance=provenance)
    with atomic_path(html_path) as tmp:
        tmp.write_text(html)
    for model, path in zip(dict.fromkeys(model for model, _ in names), description_paths):
        write_json({"Name": f"mrisr super-resolution ({model})", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": "mrisr", "Version": provenance["versions"]["mrisr"],
                                     "Description": f"model {model}", "git_commit": provenance["git_commit"]}]},
                   path)
    log.info("apply report of %d scan(s) and %d model(s) -> %s", len(figures), len(description_paths), html_path)

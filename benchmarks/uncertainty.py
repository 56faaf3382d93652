"""Sampling where it pays: how the calibrated intervals and the error ranking move with the sampler's settings.

    .venv/bin/python benchmarks/uncertainty.py                  # in a folder where `make run` finished: ~30 min
    .venv/bin/python benchmarks/uncertainty.py --workdir /path --config my.yaml --variants default samples4

For each variant (the model file's sampler settings changed: the number of samples, DDIM steps, eta and
refine_from at two steps), the run's trained weights (`results/models/<model>/weights.pt`) are calibrated anew on
the run's validation subjects by the calibrate stage's own function, and every test subject's LR is
sampled and scored by the evaluate stage's uncertainty table: coverage of the 50 % and 90 % intervals,
Spearman rho and AUROC (worst 10 % of voxels) of the calibrated error scale and of the raw sample sd, brain
PSNR of the estimate, and the sampling seconds. A variant is worth its cost when rho and AUROC rise
without the estimate's PSNR falling. The seed is the run's config's (`--config`, merged over
config/config.yaml as for the run). Prints one table; writes `<workdir>/uncertainty_sweep.json`.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mrisr.evaluation.metrics import psnr
from mrisr.evaluation.scoring import read_reference, uncertainty_tables
from mrisr.inference.calibration import error_scale
from mrisr.inference.sampling import super_resolve
from mrisr.inference.volume import calibrate_model
from mrisr.io import write_json
from mrisr.model.modelfile import condition_image, load_model, read_model_file
from mrisr.provenance import provenance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import load_config  # noqa: E402

# Each variant changes the model file's sampler settings (`default`: none); eta and refine_from act from the second
# DDIM step on, so their variants take two.
VARIANTS = {
    "default": {},
    "samples4": {"n_samples": 4},
    "samples16": {"n_samples": 16},
    "steps1": {"steps": 1},
    "steps2": {"steps": 2},
    "steps5": {"steps": 5},
    "steps10": {"steps": 10},
    "eta1": {"steps": 2, "eta": 1.0},
    "refine05": {"steps": 2, "refine_from": 0.5},
    "refine02": {"steps": 2, "refine_from": 0.2},
}


def subject_files(results: Path, subject: str, factor: int) -> dict[str, str]:
    """HR, LR and brain mask of a subject, where the workflow writes them."""
    return {"hr": str(results / "preproc" / subject / "T1w_brain.nii.gz"),
            "lr": str(results / "pairs" / subject / f"x{factor}" / "lr.nii.gz"),
            "mask": str(results / "preproc" / subject / "brain_mask.nii.gz")}


def score_variant(weights: Path, settings: dict, validation: dict, test: dict, seed: int) -> list[dict]:
    """Calibrate ``weights`` with ``settings`` on ``validation``, then sample and score every ``test`` subject."""
    with tempfile.TemporaryDirectory(prefix="mrisr_sweep_") as work:
        model = f"{work}/model.pt"
        calibration = calibrate_model(str(weights), validation, settings, seed, model, f"{work}/validation.png",
                                      f"{work}/reliability.png")
        spec, network = load_model(model, "cpu")
    rows = []
    for subject, files in test.items():
        hr, lr, inside = read_reference(files["hr"], files["lr"], files["mask"])  # the evaluate stage's reader
        lr = lr.clip(0, 1)
        started = time.perf_counter()
        sampled = super_resolve(lr, hr.shape, spec, network, settings, seed)
        seconds = time.perf_counter() - started
        scale = error_scale(calibration, condition_image(lr, hr.shape), sampled.estimate, sampled.sd,
                            sampled.view_sd)
        table, _ = uncertainty_tables(hr, lr, inside, sampled.estimate, sampled.sd, sampled.view_sd, scale,
                                      calibration)
        table = table.set_index("predictor")
        row = {"subject": subject, "psnr_brain": psnr(hr, sampled.estimate.clip(0, 1), inside),
               "sampling_s": seconds}
        for predictor, label in (("calibrated scale", "scale"), ("raw sample sd", "sd")):
            for column in ("coverage_50", "coverage_90", "spearman", "auroc_worst10"):
                row[f"{label}_{column}"] = table.loc[predictor, column]
        row["best_proxy_spearman"] = table.drop(index=["calibrated scale", "raw sample sd"])["spearman"].max()
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("."), help="a folder where the workflow ran")
    parser.add_argument("--model", default="diffusion3d", help="a trained, sampling model of that run")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--config", type=Path, action="append", default=[], help="the run's config files")
    parser.add_argument("--output", type=Path, help="default: <workdir>/uncertainty_sweep.json")
    args = parser.parse_args()
    seed = load_config(*args.config)["seed"]
    results = args.workdir / "results"
    weights = results / "models" / args.model / "weights.pt"
    spec, _ = read_model_file(weights)
    split = pd.read_csv(results / "split.tsv", sep="\t")
    factor = round(spec.step_factor[0])
    validation, test = ({s: subject_files(results, s, factor) for s in split.loc[split.role == role, "subject"]}
                        for role in ("val", "test"))
    base = {**spec.sampler, "device": "cpu"}
    started, rows = time.perf_counter(), []
    for name in args.variants:
        settings = {**base, **VARIANTS[name]}
        rows += [{"variant": name, **row} for row in score_variant(weights, settings, validation, test, seed)]
        print(f"{name}: {time.perf_counter() - started:.0f} s so far", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.model} of {results}, calibrated on {', '.join(validation)} for every variant; "
          f"coverage in %, rho and AUROC of the calibrated scale (sd: of the raw sample sd)")
    shown = table.assign(**{c: 100 * table[c] for c in table if "coverage" in c})
    print(shown.round(3).to_string(index=False))
    write_json({"model": args.model, "workdir": str(args.workdir.resolve()), "seed": seed, "variants": VARIANTS,
                "rows": table.to_dict(orient="records"),
                "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
                "provenance": provenance(REPO), "total_seconds": time.perf_counter() - started},
               args.output or args.workdir / "uncertainty_sweep.json")


if __name__ == "__main__":
    main()

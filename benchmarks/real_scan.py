"""A real head as a user has it, through `mrisr super-resolve`: brain PSNR over cubic, and the wall time.

    .venv/bin/python benchmarks/real_scan.py --model results/models/diffusion3d/model.pt   # about 5 min on 2 cores

pycortex's S1 (one real person, 1 mm, with skull and face, stored LIA) is degraded as the training pairs
are (Gaussian and cubic spline, `degradations.spline` of the config) to `--factor` times its voxel (3 mm
by default) and stored as it was, skull included. `mrisr super-resolve` runs on it twice, with its
defaults and with `--fast`, each timed from the command line (ROBEX, N4, sampling and writing
included). Each output, and the cubic interpolation of the same scan, is scored against S1's own 1 mm
image degraded (anti-aliased, the same spline) onto the output grid, in S1's ROBEX brain mask at 1 mm
carried to that grid. Use a model whose training did not include S1 (the leave-one-real-brain-out fold
of `quality.py`, or a run with S1 among the validation subjects): S1 in training flatters it. Prints
one table and writes `real_scan.json` (figures, commands, machine, provenance) in `--workdir`.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import load_config  # noqa: E402
from mrisr.data.registry import fetch_volume  # noqa: E402
from mrisr.evaluation.metrics import psnr  # noqa: E402
from mrisr.grids import lr_affine_for, upsample  # noqa: E402
from mrisr.io import write_json  # noqa: E402
from mrisr.model.modelfile import read_model_file  # noqa: E402
from mrisr.pairs.degrade import degrade  # noqa: E402
from mrisr.preprocess.skullstrip import brain_mask  # noqa: E402
from mrisr.provenance import provenance  # noqa: E402


def make_scan(head: nib.Nifti1Image, factor: int, spline: dict, path: Path) -> np.ndarray:
    """The head degraded by ``factor``, stored in its own voxel order; returns the 1 mm voxels it covers."""
    volume = head.get_fdata(dtype=np.float32)
    lr = degrade(volume, factor, spline)
    nib.save(nib.Nifti1Image(lr, lr_affine_for(head.affine, volume.shape, lr.shape)), path)
    return volume[tuple(slice(0, n * factor) for n in lr.shape)]  # an edge-aligned LR grid covers these


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model file trained without S1")
    parser.add_argument("--factor", type=int, default=3, help="the scan's voxel, in S1's 1 mm voxels")
    parser.add_argument("--workdir", type=Path, default=Path("results/real_scan"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    spec, _ = read_model_file(args.model)
    if "s1" in spec.train_subjects:
        print(f"warning: {args.model} was trained on S1; its figures are flattered", file=sys.stderr)
    spline = load_config()["degradations"]["spline"]
    head = nib.load(fetch_volume("s1"))
    scan = args.workdir / f"s1_head_{args.factor}mm.nii.gz"
    covered = make_scan(head, args.factor, spline, scan)
    output_factor = args.factor / spec.step_factor[0]  # the output voxel, in 1 mm voxels
    reference = degrade(covered, output_factor, spline)
    mask_path = args.workdir / "s1_brain_mask_1mm.nii.gz"
    if not mask_path.exists():
        nib.save(nib.Nifti1Image(brain_mask(head, "robex", args.workdir / "robex").astype(np.uint8), head.affine),
                 mask_path)
    mask_1mm = nib.load(mask_path).get_fdata(dtype=np.float32)[tuple(slice(0, n) for n in covered.shape)]
    mask = degrade(mask_1mm, output_factor, spline) > 0.5
    peak = float(np.percentile(reference[mask], 99.5))

    lr = nib.load(scan).get_fdata(dtype=np.float32)
    cubic = np.clip(upsample(lr, reference.shape, "cubic"), 0, None)
    rows = [{"method": "cubic", "psnr_brain": psnr(reference, cubic, mask, peak), "seconds": float("nan"),
             "command": ""}]
    for name, options in (("mrisr super-resolve", []), ("mrisr super-resolve --fast", ["--fast"])):
        output = args.workdir / f"sr{'_fast' if options else ''}.nii.gz"
        command = [str(Path(sys.executable).parent / "mrisr"), "super-resolve", str(scan), "--model", args.model,
                   "--output", str(output), *options]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{name} failed: {result.stderr.strip().splitlines()[-1]}")
        estimate = nib.load(output).get_fdata(dtype=np.float32)
        rows.append({"method": name, "psnr_brain": psnr(reference, estimate, mask, peak), "seconds": seconds,
                     "command": " ".join(command)})
    table = pd.DataFrame(rows)
    table["over_cubic"] = table["psnr_brain"] - table.loc[0, "psnr_brain"]
    print(f"S1 head at {args.factor} mm ({lr.shape}) -> {reference.shape}, brain PSNR against S1's 1 mm image "
          f"on the output grid, in its ROBEX mask; model {args.model}")
    print(table.drop(columns="command").round(3).to_string(index=False))
    write_json({"model": args.model, "factor": args.factor, "rows": rows,
                "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
                "provenance": provenance(REPO)}, args.workdir / "real_scan.json")


if __name__ == "__main__":
    main()

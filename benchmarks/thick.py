"""The thick-slice suite of the quality benchmark: held-out brains at 4.5 mm slices along z, x or y, super-resolved
by cubic interpolation, back-projection, the suite's mrisr models and ECLARE, all scored on the same voxels.

The models are trained by the workflow itself (``pairs.factor`` and ``pairs.degradation`` of the suite, thick axis
z); every LR here is made by the same degradation from the test subject's preprocessed brain along the axis asked
for, and a model whose thick axis is z samples an x- or y-thick scan turned so its thick axis is the model's
(:func:`mrisr.inference.sampling.super_resolve`). ECLARE (Remedios et al. 2023, PyPI ``eclare``, self-supervised:
it trains on the scan itself) runs from a virtual environment of its own (``make eclare-env``, never the project's
lock); without it the suite leaves ECLARE out and says so. Its budget (training patches, and the slice thickness
given or estimated by its ESPRESO step) is a setting printed with the figures. ECLARE's output is checked against
the HR grid (shape and affine) and resampled onto it in world coordinates only when they differ. For each subject
and axis one figure shows every method in the two planes cut across the thick axis, where thick slices differ
(:func:`thick_figure`); :func:`figure_links` lists them as Markdown for the docs and the report.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from mrisr.figures import PLANES, comparison_panel, planes_across
from mrisr.grids import lr_affine_for, upsample
from mrisr.io import load_volume, save_volume
from mrisr.pairs.degrade import back_project, degrade
from mrisr.pairs.operators import slice_thickness

REPO = Path(__file__).resolve().parents[1]
ECLARE_VENV = Path(os.environ.get("MRISR_ECLARE_VENV", REPO / ".eclare-venv"))
AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class EclareBudget:
    """What ECLARE may spend: ``n_patches`` training patches (its default is 1,000,000), and the slice profile's
    FWHM in HR voxels given (``known_thickness``) or estimated by ESPRESO (false)."""

    n_patches: int = 12800
    known_thickness: bool = True

    def label(self) -> str:
        return f"{self.n_patches:,} patches, " + ("known thickness" if self.known_thickness else "ESPRESO")


def thick_factor(axis: str, factor: float) -> list[float]:
    """The per-axis factor of a scan whose slices are ``factor`` times thicker along ``axis`` (x, y or z)."""
    factors = [1.0, 1.0, 1.0]
    factors[AXES[axis]] = float(factor)
    return factors


def eclare_thickness(lr_shape, hr_shape, degradation: dict) -> float:
    """The slice thickness (FWHM of the profile, in HR voxels) an LR scan of ``degradation`` has: what ECLARE's
    ``--relative-slice-thickness`` asks for when it is known."""
    true_factors = np.asarray(hr_shape, float) / np.asarray(lr_shape)
    return slice_thickness(float(true_factors.max()), degradation.get("gap", 0.0))


def run_eclare(lr_path: Path, out_dir: Path, budget: EclareBudget, thickness: float, venv: Path = ECLARE_VENV,
               timeout: float = 4 * 3600) -> tuple[Path, float]:
    """ECLARE on ``lr_path`` from its own environment on one CPU thread; the output file and the wall seconds.

    One thread: on a busy two-core machine two threads synchronising on every small operation made its slice-by-
    slice inference four times slower (docs/experiments.md, ECLARE on this CPU).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [str(venv / "bin" / "run-eclare"), "--in-fpath", str(lr_path), "--out-dir", str(out_dir),
               "--gpu-id", "-1", "--n-patches", str(budget.n_patches)]
    if budget.known_thickness:
        command += ["--relative-slice-thickness", f"{thickness:g}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    with open(out_dir / "eclare.log", "w") as log:
        subprocess.run(command, env=env, check=True, timeout=timeout, stdout=log, stderr=subprocess.STDOUT)
    output = out_dir / lr_path.name.replace(".nii", "_eclare.nii")
    return output, time.perf_counter() - started


def onto_grid(volume: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray,
              tolerance_mm: float = 1e-3) -> tuple[np.ndarray, str]:
    """``volume`` (on the grid ``affine``) on the grid ``(shape, target_affine)``, and what was done.

    Unchanged when both grids agree to ``tolerance_mm`` at every corner; otherwise cubic-spline resampled at the
    world position of every target voxel, and the note says how far the grids were apart.
    """
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5)
                        for k in (-0.5, shape[2] - 0.5)]).T  # the outer voxel edges of the target grid
    offset_mm = float(np.abs((np.asarray(affine) @ corners - np.asarray(target_affine) @ corners)[:3]).max())
    if tuple(volume.shape) == tuple(shape) and offset_mm <= tolerance_mm:
        return np.asarray(volume, np.float32), f"on the HR grid (within {offset_mm:.1e} mm)"
    voxel_map = np.linalg.inv(affine) @ np.asarray(target_affine)
    resampled = ndimage.affine_transform(np.asarray(volume, np.float32), voxel_map[:3, :3], voxel_map[:3, 3],
                                         output_shape=tuple(shape), order=3, mode="nearest")
    return resampled.astype(np.float32), (f"resampled onto the HR grid (shape {tuple(volume.shape)}, grids up to "
                                          f"{offset_mm:.3g} mm apart)")


def make_lr(hr_path: Path, axis: str, factor: float, degradation: dict, path: Path) -> tuple[np.ndarray, list[float]]:
    """The thick-slice LR of a preprocessed brain along ``axis``, written on its own edge-aligned grid."""
    image = load_volume(hr_path)
    hr = image.get_fdata(dtype=np.float32)
    factors = thick_factor(axis, factor)
    lr = degrade(hr, factors, degradation)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_volume(lr, lr_affine_for(image.affine, hr.shape, lr.shape), path, description=f"thick slices along {axis}")
    return lr, factors


def eclare_estimate(lr_path: Path, hr_image, degradation: dict, budget: EclareBudget, venv: Path
                    ) -> tuple[np.ndarray, float, str]:
    """ECLARE's estimate on the HR grid, its seconds and the grid note; a finished run in the same folder with the
    same budget is read, not rerun."""
    folder = lr_path.parent / f"eclare_{budget.n_patches}_{'known' if budget.known_thickness else 'espreso'}"
    record = folder / "eclare.json"
    if record.is_file():
        done = json.loads(record.read_text())
        output, seconds = Path(done["output"]), done["seconds"]
    else:
        lr_image = load_volume(lr_path)
        thickness = eclare_thickness(lr_image.shape, hr_image.shape, degradation)
        output, seconds = run_eclare(lr_path, folder, budget, thickness, venv)
        record.write_text(json.dumps({"output": str(output), "seconds": seconds, "thickness": thickness,
                                      **asdict(budget)}))
    image = load_volume(output)
    estimate, note = onto_grid(image.get_fdata(dtype=np.float32), image.affine, hr_image.shape, hr_image.affine)
    return estimate, seconds, note


def thick_figure(hr: np.ndarray, estimates: dict[str, np.ndarray], subject: str, axis: str, path: Path) -> Path:
    """The HR brain and every method's estimate (``estimates``: method -> volume on the HR grid, in [0, 1]) in the
    two planes across the thick ``axis``, then each estimate's absolute error against the HR on one shared scale."""
    planes = planes_across([3 if index == AXES[axis] else 1 for index in range(3)])
    title = f"{subject}, thick along {axis}: {' and '.join(PLANES[plane] for plane in planes)} slices, across it"
    return comparison_panel({"HR": hr, **estimates}, title, str(path), planes=planes,
                            maps=[{f"{method} error": np.abs(estimate - hr) for method, estimate in estimates.items()}])


def figure_links(rows: pd.DataFrame, folder: Path) -> list[str]:
    """A Markdown image link to the figure of each subject and axis of ``rows`` (:func:`thick_rows`' rows), relative
    to ``folder``, where the Markdown that holds them is written."""
    return [f"![{row.subject}, thick along {row.axis}: slices across the thick axis]"
            f"({os.path.relpath(row.figure, folder)})"
            for row in rows.drop_duplicates(["subject", "axis"]).itertuples()]


def thick_rows(subject: str, preproc: Path, axes: list[str], factor: float, degradation: dict, models: dict,
               evaluate: dict, budget: EclareBudget | None, workdir: Path, seed: int, threads: int) -> list[dict]:
    """Every method's scores on one subject along each of ``axes``, with the figure of its slices across the thick
    axis (:func:`thick_figure`, beside the LR); ``models``: name -> model file."""
    import torch

    from mrisr.evaluation.scoring import score
    from mrisr.inference.sampling import super_resolve
    from mrisr.model.modelfile import load_model

    torch.set_num_threads(threads)
    hr_image = load_volume(preproc / subject / "T1w_brain.nii.gz")
    hr = np.clip(hr_image.get_fdata(dtype=np.float32), 0, 1)
    mask = load_volume(preproc / subject / "brain_mask.nii.gz").get_fdata(dtype=np.float32) > 0.5
    networks = {name: load_model(model_path, "cpu") for name, model_path in models.items()}
    rows = []
    for axis in axes:
        lr_path = workdir / "thick" / subject / axis / "lr.nii.gz"
        lr, factors = make_lr(preproc / subject / "T1w_brain.nii.gz", axis, factor, degradation, lr_path)
        lr = np.clip(lr, 0, 1)
        estimates: dict[str, tuple[np.ndarray, float, str]] = {}
        started = time.perf_counter()
        cubic = upsample(lr, hr.shape, "cubic")
        estimates["cubic"] = (cubic, time.perf_counter() - started, "")
        started = time.perf_counter()
        estimates["back_projection"] = (back_project(cubic, lr, factors, degradation,
                                                     evaluate["back_projection_iterations"]),
                                        time.perf_counter() - started, "")
        for name, (spec, network) in networks.items():
            settings = {**spec.sampler, "device": "cpu"}
            started = time.perf_counter()
            estimate = super_resolve(lr, hr.shape, spec, network, settings, seed).estimate
            estimates[name] = (estimate, time.perf_counter() - started, "")
        if budget is not None:
            estimates["eclare"] = eclare_estimate(lr_path, hr_image, degradation, budget, ECLARE_VENV)
        figure = thick_figure(hr, {method: np.clip(estimate, 0, 1) for method, (estimate, _, _) in estimates.items()},
                              subject, axis, lr_path.parent / "slices_across_thick_axis.png")
        for method, (estimate, seconds, note) in estimates.items():
            row = score(hr, lr, mask, estimate, factors, degradation, evaluate["tissue_classes"])
            rows.append({"subject": subject, "axis": axis, "factor": "x".join(f"{f:g}" for f in factors),
                         "method": method, "seconds": seconds, "note": note,
                         "budget": budget.label() if method == "eclare" else "", "figure": str(figure), **row})
            print(f"  {subject} {axis} {method}: PSNR {row['psnr_brain']:.2f} dB, SSIM {row['ssim_brain']:.4f} "
                  f"({seconds:.0f} s) {note}", flush=True)
    return rows


def thick_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per subject and axis: brain PSNR, SSIM and mean tissue Dice of every method, and PSNR against cubic and
    ECLARE (when it ran)."""
    table = rows.copy()
    dice = [column for column in table if column.startswith("dice_")]
    table["dice_mean"] = table[dice].mean(axis=1)
    keys = ["subject", "axis"]
    for reference in ("cubic", "eclare"):
        base = table[table["method"] == reference].set_index(keys)["psnr_brain"]
        if len(base):
            table[f"vs_{reference}"] = table["psnr_brain"] - table.set_index(keys).index.map(base).to_numpy()
    columns = [*keys, "method", "psnr_brain", "ssim_brain", "dice_mean",
               *[c for c in ("vs_cubic", "vs_eclare") if c in table], "seconds", "budget"]
    return table[columns]


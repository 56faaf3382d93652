"""Which model fits a scan's voxel size, and with its axes in which order.

A model takes scans of one voxel size per axis (:attr:`mrisr.model.spec.ModelSpec.input_voxel_mm`, in the
RAS voxel order it was trained in). A thick-slice model (1.5 x 1.5 x 4.5 mm, thick along z) also takes a scan
whose thick axis is x or y (a sagittal or coronal acquisition): the order of its axes nearest the scan's voxel
size is the one its factor is turned to, and sampling then turns the scan to the model
(:func:`mrisr.inference.sampling.model_axis_order`). Of several models, a scan goes to the one whose voxel size,
so turned, is nearest its own. Nothing here imports PyTorch or reads voxels: the workflow pairs its scans with
models from their NIfTI headers while it parses.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import nibabel as nib
import numpy as np

from ..grids import voxel_sizes
from ..preprocess.orientation import canonical_grid

# A scan's voxel may be this share larger or smaller than the model's input voxel along each axis.
VOXEL_SIZE_TOLERANCE = 0.25


def ras_voxel_mm(image: nib.spatialimages.SpatialImage) -> np.ndarray:
    """A scan's voxel sizes in the RAS voxel order it is prepared in (:func:`mrisr.preprocess.orientation.
    to_canonical`), from its header alone."""
    return voxel_sizes(canonical_grid(tuple(image.shape[:3]), image.affine)[1])


def voxel_size_distance(voxel_mm: Sequence[float], other_mm: Sequence[float]) -> float:
    """How far apart two voxel sizes are: the length of their per-axis log ratios (0: the same; twice as large
    along one axis: 0.69), so a step up and the same step down count alike."""
    return float(np.linalg.norm(np.log(np.asarray(voxel_mm, float) / np.asarray(other_mm, float))))


def nearest_axis_order(input_mm: Sequence[float], scan_mm: Sequence[float]) -> tuple[tuple[int, ...], float]:
    """The order of a model's axes that brings its input voxel size ``input_mm`` nearest a scan's ``scan_mm`` (both
    in the RAS voxel order), and how near (:func:`voxel_size_distance`). On a tie the fewest axes move, so an
    isotropic model is never turned."""
    def distance(order: tuple[int, ...]) -> float:
        return round(voxel_size_distance(np.take(input_mm, order), scan_mm), 9)

    order = min(itertools.permutations(range(3)),
                key=lambda order: (distance(order), sum(a != i for i, a in enumerate(order)), order))
    return order, distance(order)


def fits(input_mm: Sequence[float], scan_mm: Sequence[float]) -> bool:
    """Whether a scan's voxel size is within :data:`VOXEL_SIZE_TOLERANCE` of a model's along every axis."""
    return bool(np.all(np.abs(np.asarray(scan_mm, float) / np.asarray(input_mm, float) - 1) <= VOXEL_SIZE_TOLERANCE))


def millimetres(voxel_mm: Sequence[float]) -> str:
    """A voxel size as it reads in a message: ``1.5 x 1.5 x 4.5``."""
    return " x ".join(f"{mm:.3g}" for mm in voxel_mm)


def nearest_model(inputs: dict[str, Sequence[float]], scan_mm: Sequence[float]) -> tuple[str, str]:
    """The model of ``inputs`` (name -> the input voxel size it takes) whose voxel size, turned onto the scan's
    axes, is nearest the scan's ``scan_mm`` (RAS voxel order), and one line saying why. On a tie, the first."""
    turned = {name: nearest_axis_order(mm, scan_mm) for name, mm in inputs.items()}
    name = min(turned, key=lambda model: turned[model][1])
    order, distance = turned[name]
    others = "; ".join(f"{other} {millimetres(inputs[other])} mm: {turned[other][1]:.2f}"
                       for other in inputs if other != name)
    return name, (f"voxel size {millimetres(scan_mm)} mm (RAS order): {name}, which takes "
                  f"{millimetres(inputs[name])} mm scans"
                  + (f" (turned to {millimetres(np.take(inputs[name], order))})" if order != (0, 1, 2) else "")
                  + f", is nearest (log-ratio distance {distance:.2f}" + (f"; {others})" if others else ")"))


def apply_jobs(scans: dict[str, str], models: list[str],
               input_mm: Callable[[str], Sequence[float]] | None) -> dict[tuple[str, str], str]:
    """The apply stage's jobs, model by model: ``(model, scan)`` -> why this model (empty: every model runs).

    Without ``input_mm`` every model of ``models`` super-resolves every scan of ``scans`` (scan ID -> file);
    with it (model -> the input voxel size it takes) each scan goes to the one model nearest its voxel size
    (:func:`nearest_model`), read from its header.
    """
    if input_mm is None:
        return {(model, scan): "" for model in models for scan in scans}
    inputs = {model: input_mm(model) for model in models}
    picked = {scan: nearest_model(inputs, ras_voxel_mm(nib.load(path))) for scan, path in scans.items()}
    return {(model, scan): picked[scan][1] for model in models for scan in scans if picked[scan][0] == model}

"""A user's own scan: the pipeline's preprocessing fitted to an LR scan, the model on the brain's box, the result
back on the scan's own grid, and a check against the scan itself before anything is written.

Steps (shared by ``mrisr super-resolve`` and the workflow's ``apply`` stage):

1. Refuse what is not one T1w head or brain (:func:`check_scan`): a 2D slice,
   a constant image, a field of view larger than a head, a voxel size the
   model was not trained for, a z-scored image; one line each. An anisotropic
   (thick-slice) model's factor is turned onto the scan's axes first
   (:func:`turned_factor`): a model thick along z takes a scan thick along x.
2. The RAS voxel order (:mod:`mrisr.preprocess.orientation`), N4 bias field,
   and the brain mask: ``auto`` takes a scan whose foreground is no bigger
   than a brain for skull-stripped, else runs ROBEX, and logs its evidence
   (:func:`mrisr.preprocess.skullstrip.decide`). Foreground is the largest
   bright region, never "above zero": resampled backgrounds are tiny but
   positive, noisy ones are not zero at all.
3. Normalisation inside the brain mask (white-matter peak to 0.75, as the
   training brains), background zeroed as in training.
4. The model on the brain's box only (the background is most of a head's
   field of view), then the estimate in the scan's units and shading:
   inside the brain the model's estimate, outside the cubic interpolation
   (or nothing, with ``brain_only``), blended over the mask's soft edge.
   With a calibrated model (:mod:`mrisr.inference.calibration`), its error
   scale and the bounds of the interval at ``settings["interval"]`` in the
   brain, in the scan's units.
5. The check (:func:`check_estimate`): the estimate must reproduce the scan
   (its LR-consistency in the brain at least the cubic interpolation's) and
   correlate with the cubic interpolation in the brain; otherwise one line
   names the figures and nothing is written.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..figures import comparison_panel
from ..grids import factor_label, hr_grid_for, lr_shape_for, upsample, voxel_sizes
from ..io import MrisrError, load_volume, save_volume, write_json
from ..model.modelfile import condition_image, load_model, read_calibration
from ..model.networks import resolve_device
from ..model.spec import ModelSpec
from ..pairs.degrade import degrade, noise_free
from ..preprocess.intensity import WHITE_MATTER_LEVEL, white_matter_peak
from ..preprocess.orientation import to_canonical, to_scan_order
from ..preprocess.skullstrip import brain_mask, decide, foreground, to_ants
from .calibration import describe, error_scale, interval_halfwidth, write_interval
from .sampling import consistency_operator, super_resolve
from .voxel_fit import fits, nearest_axis_order, ras_voxel_mm

log = logging.getLogger(__name__)

# What a scan may be: at least this many voxels along each axis, a field of view no larger than a head.
MIN_VOXELS = 8
MAX_FIELD_OF_VIEW_MM = 320.0
# Voxels below zero beyond this share (and this deep, relative to the brain's bright end) mean a z-scored or
# phase image, not a magnitude T1w scan; fewer are the ringing of a resampled scan and are clipped.
MAX_NEGATIVE_SHARE = 0.01
NEGATIVE_DEPTH = 0.05
# ``auto`` skull stripping of a user's scan: a voxel darker than this share of the bright end is background,
# whatever its exact value (zero, a resampling's 1e-30, or noise).
BACKGROUND_LEVEL = 0.1
# Empty LR voxels around the brain kept in its box: context for the network's windows.
BOX_MARGIN = 3
# After normalisation (white matter at 0.75) a T1w brain has almost nothing brighter than 1 (vessels): a scan
# with more of its brain there has another contrast (CSF bright: T2-weighted, FLAIR) than the training brains.
MAX_SATURATED_SHARE = 0.05
# The estimate must correlate with the cubic interpolation in the brain at least this much. Measured on
# correct estimates 0.98 and more; a flat or black output far below.
MIN_CORRELATION = 0.9


@dataclass
class PreparedScan:
    """A scan made ready for a model: RAS voxel order, bias-corrected, normalised, with its brain mask."""

    volume: np.ndarray        # the scan in the RAS voxel order, negatives clipped (scan units)
    affine: np.ndarray        # its RAS affine
    mask: np.ndarray          # brain mask on the scan's grid
    bias: np.ndarray          # N4 bias field (ones without correction)
    scale: float              # scan units per normalised unit: white-matter peak / 0.75
    skull_strip: str          # the method used
    evidence: str             # why
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def normalised(self) -> np.ndarray:
        """What the network sees: bias-corrected, white matter at 0.75, zero outside the brain, in [0, 1]."""
        return np.clip(self.head, 0, 1) * self.mask

    @property
    def head(self) -> np.ndarray:
        """The whole scan in the model's units: bias-corrected and scaled, neither clipped nor masked."""
        return self.volume / self.bias / self.scale


def turned_factor(spec: ModelSpec, image: nib.Nifti1Image) -> tuple[list[float], list[float]]:
    """The model's step factor and input voxel size along the scan's axes in the RAS voxel order it is prepared in.

    An anisotropic model's axes in the order nearest the scan's voxel size (a model thick along z on a scan thick
    along x: its factor along x); an isotropic model's as they are. The output grid is the scan's refined by this
    factor, and :func:`mrisr.inference.sampling.super_resolve` then turns the scan to the model to sample it.
    """
    order, _ = nearest_axis_order(spec.input_voxel_mm, ras_voxel_mm(image))
    return [spec.step_factor[a] for a in order], [spec.input_voxel_mm[a] for a in order]


def check_scan(image: nib.Nifti1Image, path: str, spec: ModelSpec, voxel_size_check: bool = True) -> None:
    """Raise :class:`MrisrError` with one line when ``image`` is not a scan this model can super-resolve."""
    volume = np.asarray(image.dataobj, dtype=np.float32)
    if min(volume.shape) < MIN_VOXELS:
        raise MrisrError(f"{path}: shape {volume.shape} is a slice or a thin slab, not a volume; give a 3D scan "
                         f"with at least {MIN_VOXELS} voxels along each axis")
    if float(volume.max()) == float(volume.min()):
        raise MrisrError(f"{path}: every voxel is {float(volume.max()):g}: an empty or constant image, not a scan")
    field_of_view = np.asarray(volume.shape) * voxel_sizes(image.affine)
    if field_of_view.max() > MAX_FIELD_OF_VIEW_MM:
        raise MrisrError(f"{path}: field of view {field_of_view.round().astype(int).tolist()} mm is larger than a "
                         f"head ({MAX_FIELD_OF_VIEW_MM:g} mm at most along an axis); crop the scan to the head")
    bright = float(np.percentile(volume, 99.5))
    negative = volume < -NEGATIVE_DEPTH * max(bright, 1e-12)
    if negative.mean() > MAX_NEGATIVE_SHARE:
        raise MrisrError(f"{path}: {100 * negative.mean():.0f} % of the voxels are well below zero: a z-scored, "
                         "difference or phase image, not a T1w magnitude scan; give the scan as it was acquired")
    if voxel_size_check and not fits(turned_factor(spec, image)[1], ras_voxel_mm(image)):
        any_order = " (in any order of its axes)" if len(set(np.round(spec.input_voxel_mm, 6))) > 1 else ""
        raise MrisrError(
            f"{path}: voxel size {voxel_sizes(image.affine).round(2).tolist()} mm, but this model turns "
            f"{np.round(spec.input_voxel_mm, 2).tolist()} mm scans{any_order} into "
            f"{np.round(spec.voxel_mm, 2).tolist()} mm (factor {spec.step_factor}); use a model trained for this "
            "factor, or skip this check")


def prepare_scan(image: nib.Nifti1Image, skull_strip: str, stripped_max_ml: float, bias_correction: bool,
                 normalize: bool, work_dir: str | Path, seed: int) -> PreparedScan:
    """The scan in the RAS voxel order, its brain mask, bias field and intensity scale (see the module docstring)."""
    seconds = {}
    started = time.perf_counter()
    canonical = to_canonical(image)
    volume = np.clip(canonical.get_fdata(dtype=np.float32), 0, None)
    method, evidence = decide(nib.Nifti1Image(volume, canonical.affine), skull_strip, stripped_max_ml,
                              background_level=BACKGROUND_LEVEL)
    if method == "none":  # the scan's own brain, its dark edge (CSF) kept, the background beyond it not
        mask = ndimage.binary_dilation(foreground(volume), iterations=1)
    else:
        mask = brain_mask(nib.Nifti1Image(volume, canonical.affine), method, work_dir, seed)
    seconds["brain_mask"] = time.perf_counter() - started
    bias = np.ones_like(volume)
    if bias_correction:
        started = time.perf_counter()
        bias = n4_bias_field(volume, mask, canonical.affine)
        seconds["bias_correction"] = time.perf_counter() - started
    scale = white_matter_peak(volume[mask] / bias[mask]) / WHITE_MATTER_LEVEL if normalize else 1.0
    saturated = float(np.mean(volume[mask] / bias[mask] / scale > 1.0))
    if saturated > MAX_SATURATED_SHARE:
        raise MrisrError(f"{100 * saturated:.0f} % of the brain is brighter than white matter by a third: not the "
                         "T1w contrast the model was trained on (is it T2-weighted or FLAIR?)")
    return PreparedScan(volume, canonical.affine, mask, bias, scale, method, evidence, seconds)


def n4_bias_field(volume: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """ANTs N4's multiplicative bias field of ``volume`` in ``mask``, normalised to a mean of 1 in the mask."""
    import ants

    image = to_ants(nib.Nifti1Image(volume, affine))
    field = ants.n4_bias_field_correction(image, mask=image.new_image_like(mask.astype(np.float32)),
                                          shrink_factor=2, return_bias_field=True).numpy()
    field = np.clip(field, 1e-3, None)
    return (field / field[mask].mean()).astype(np.float32)


def brain_box(mask: np.ndarray, margin: int = BOX_MARGIN) -> tuple[slice, ...]:
    """The bounding box of ``mask`` with ``margin`` voxels around it, within the volume."""
    indices = np.argwhere(mask)
    low = np.maximum(indices.min(axis=0) - margin, 0)
    high = np.minimum(indices.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def check_estimate(estimate: np.ndarray, cubic: np.ndarray, scan: np.ndarray, mask: np.ndarray,
                   output_mask: np.ndarray, factor: list[float], degradation: dict) -> dict[str, float]:
    """The figures that say whether ``estimate`` (scan units, output grid) still is the scan, super-resolved.

    ``lr_psnr``: PSNR in the brain of the estimate degraded with the operator
    its data consistency assumed (``degradation``, at the scan's per-axis
    ``factor``) against the scan (data range: the scan's bright end in the
    brain), beside the same for the cubic interpolation; ``correlation``: the
    estimate against the cubic interpolation in the brain. Raises
    :class:`MrisrError` with one line when either is off.
    """
    data_range = float(np.percentile(scan[mask], 99.5))

    def lr_psnr(volume: np.ndarray) -> float:
        error = degrade(volume, factor, noise_free(degradation)) - scan
        mse = float(np.mean(error[mask].astype(np.float64) ** 2))
        return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))

    inside = output_mask > 0.5
    figures = {"lr_psnr": lr_psnr(estimate), "lr_psnr_cubic": lr_psnr(cubic),
               "correlation": float(np.corrcoef(estimate[inside], cubic[inside])[0, 1])
               if estimate[inside].std() > 0 else 0.0}
    problems = []
    if not figures["lr_psnr"] >= figures["lr_psnr_cubic"]:
        problems.append(f"LR-consistency {figures['lr_psnr']:.1f} dB < the cubic interpolation's "
                        f"{figures['lr_psnr_cubic']:.1f} dB")
    if not figures["correlation"] >= MIN_CORRELATION:
        problems.append(f"correlation with the cubic interpolation in the brain {figures['correlation']:.3f} "
                        f"< {MIN_CORRELATION}")
    if problems:
        raise MrisrError("the estimate does not reproduce the scan: " + "; ".join(problems)
                         + "; nothing written (check the brain mask with --mask, or the scan's contrast)")
    return figures


@dataclass
class ScanOutputs:
    """Where :func:`super_resolve_scan` writes: the estimate, and optionally the sd map, the mask, a JSON
    sidecar, a figure of slices, and the calibrated error scale and interval bounds."""

    estimate: str
    sd: str | None = None
    mask: str | None = None
    sidecar: str | None = None
    panel: str | None = None
    # With a calibrated model: its error scale and the bounds of the interval at the sampler's ``interval``.
    scale: str | None = None
    lower: str | None = None
    upper: str | None = None


def super_resolve_scan(
    scan_path: str, model_path: str, settings: dict, outputs: ScanOutputs, seed: int = 0,
    skull_strip: str = "auto", stripped_max_ml: float = 2500.0, bias_correction: bool = True, normalize: bool = True,
    brain_only: bool = False, voxel_size_check: bool = True, provenance: dict | None = None,
) -> dict:
    """Super-resolve one scan as the module docstring says; returns what the sidecar records.

    ``settings`` are the sampler settings (the model file's, with the user's
    changes). Nothing is written unless the estimate passes its check.
    """
    started = time.perf_counter()
    image = load_volume(scan_path)
    spec, network = load_model(model_path, resolve_device(settings["device"]))
    check_scan(image, scan_path, spec, voxel_size_check)
    scan_factor, _ = turned_factor(spec, image)
    with tempfile.TemporaryDirectory(prefix="mrisr_scan_") as work_dir:
        scan = prepare_scan(image, skull_strip, stripped_max_ml, bias_correction, normalize, work_dir, seed)
    log.info("%s: skull strip %s (%s); white-matter peak %.4g", scan_path, scan.skull_strip, scan.evidence,
             scan.scale * WHITE_MATTER_LEVEL)
    output_shape, output_affine = hr_grid_for(scan.affine, scan.volume.shape, scan_factor)
    true_factors = np.asarray(output_shape) / np.asarray(scan.volume.shape)
    box = brain_box(scan.mask)
    output_box = tuple(slice(int(round(s.start * f)), int(round(s.stop * f))) for s, f in zip(box, true_factors))
    box_shape = [s.stop - s.start for s in output_box]
    if lr_shape_for(box_shape, scan_factor) != tuple(s.stop - s.start for s in box):
        raise MrisrError(f"{scan_path}: the brain's box does not map onto whole output voxels at factor "
                         f"{scan_factor}; use a model with an integer factor")
    calibration = read_calibration(model_path) if outputs.scale else None
    if outputs.scale and calibration is None:
        log.info("%s: not calibrated; only the raw sample sd is written", model_path)
    sampling_started = time.perf_counter()
    # The network sees the brain (as in training); data consistency is with the head, the scan as acquired.
    sampled = super_resolve(scan.normalised[box], box_shape, spec, network, settings, seed,
                            consistency_lr=scan.head[box])
    estimate_box, spread_box = sampled.estimate, sampled.sd
    scan.seconds["sampling"] = time.perf_counter() - sampling_started

    # Back in the scan's units and shading: the brain from the model, the rest from the cubic interpolation.
    units = upsample(scan.bias, output_shape, "cubic") * scan.scale
    brain = np.clip(upsample(scan.mask.astype(np.float32), output_shape, "trilinear"), 0, 1)
    model_estimate, model_spread = np.zeros(output_shape, np.float32), np.zeros(output_shape, np.float32)
    model_estimate[output_box], model_spread[output_box] = estimate_box, spread_box
    cubic = np.clip(upsample(scan.volume, output_shape, "cubic"), 0, None)
    inside = brain * model_estimate * units
    estimate = inside + (1 - brain) * cubic
    figures = check_estimate(estimate, cubic, scan.volume, scan.mask, brain, scan_factor,
                             consistency_operator(spec, settings))
    interval = None
    if calibration is not None:  # in the scan's units, in the brain only (the cubic outside it is not modelled)
        model_scale = np.zeros(output_shape, np.float32)
        model_scale[output_box] = error_scale(calibration, condition_image(scan.normalised[box], box_shape),
                                              estimate_box, spread_box, sampled.view_sd)
        scale_map = brain * model_scale * units
        halfwidth = interval_halfwidth(calibration, settings["interval"])
        interval = {"level": settings["interval"], "halfwidth": halfwidth,
                    "meaning": describe(calibration, settings["interval"]) + "; brain only, zero width outside it",
                    "files": {"scale": outputs.scale, "lower": outputs.lower, "upper": outputs.upper}}

    record = {"model": str(model_path), "model_kind": spec.kind, "factor": spec.step_factor,
              "factor_ras": scan_factor,  # the model's factor along the scan's axes in the RAS voxel order
              "input": str(scan_path), "input_voxel_mm": voxel_sizes(image.affine).round(4).tolist(),
              "output_voxel_mm": voxel_sizes(output_affine).round(4).tolist(), "skull_strip": scan.skull_strip,
              "skull_strip_evidence": scan.evidence, "white_matter_peak": scan.scale * WHITE_MATTER_LEVEL,
              "brain_only": brain_only, "sampler": settings, "seed": seed, **figures,
              "uncertainty": interval or {"calibrated": False, "sd": outputs.sd,
                                          "meaning": "raw sample sd, not an error scale"},
              "seconds": {**{k: round(v, 1) for k, v in scan.seconds.items()},
                          "total": round(time.perf_counter() - started, 1)},
              "provenance": provenance or {}}
    to_scan = lambda volume: to_scan_order(volume, output_affine, image.affine)  # noqa: E731
    written, scan_affine = to_scan(inside if brain_only else estimate)
    save_volume(written, scan_affine, outputs.estimate, description="mrisr SR estimate")
    if outputs.sd:
        save_volume(to_scan(brain * model_spread * units)[0], scan_affine, outputs.sd,
                    description="mrisr SR sample sd (scan units)")
    if interval is not None:
        write_interval(lambda volume, path, description: save_volume(to_scan(volume)[0], scan_affine, path,
                                                                     description=description),
                       inside if brain_only else estimate, scale_map, interval["halfwidth"], settings["interval"],
                       (outputs.scale, outputs.lower, outputs.upper))
    if outputs.mask:
        save_volume(to_scan((brain > 0.5).astype(np.uint8))[0], scan_affine, outputs.mask, dtype=np.uint8,
                    description="mrisr brain mask")
    if outputs.sidecar:
        write_json(record, outputs.sidecar)
    if outputs.panel:
        top = float(np.percentile(scan.volume[scan.mask], 99.5))
        views = {"scan (nearest)": upsample(scan.volume, output_shape, "nearest"), "cubic spline": cubic,
                 "estimate": estimate, "brain mask": brain * top}
        comparison_panel({name: np.clip(view[output_box] / top, 0, 1) for name, view in views.items()},
                         f"{Path(scan_path).name}: {spec.kind} ×{factor_label(scan_factor)}, "
                         f"skull strip {scan.skull_strip}", outputs.panel,
                         maps=[{"sample sd": (brain * model_spread * units)[output_box] / top}])
    log.info("%s -> %s: %s voxels of %s mm; LR-consistency %.1f dB (cubic %.1f), correlation %.3f; %.1f s",
             scan_path, outputs.estimate, written.shape, record["output_voxel_mm"], figures["lr_psnr"],
             figures["lr_psnr_cubic"], figures["correlation"], record["seconds"]["total"])
    return record

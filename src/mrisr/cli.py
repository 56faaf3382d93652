"""The ``mrisr`` command: a trained model on your own scans, without the workflow."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .io import MrisrError, exit_status, load_volume

# Command-line options that override the model file's sampler defaults.
SAMPLER_OPTIONS = {"steps": "steps", "samples": "n_samples", "estimate": "estimate", "eta": "eta",
                   "data_consistency": "data_consistency"}
# --fast: one network pass over the scan as it is, no samples, so no uncertainty map.
FAST = {"steps": 1, "n_samples": 1, "flip_axes": []}
# Operators --consistency-degradation can name: those without settings (the spline's are the model's own).
PLAIN_OPERATORS = ("kspace", "block")


def sidecar_path(output: str) -> str:
    """The JSON sidecar beside an output NIfTI: ``sr.nii.gz`` -> ``sr.json``."""
    name = Path(output).name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
    return str(Path(output).with_name(stem + ".json"))


def beside(output: str, suffix: str) -> str:
    """A file beside an output NIfTI: ``sr.nii.gz``, ``scale`` -> ``sr_scale.nii.gz``."""
    name = Path(output).name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
    return str(Path(output).with_name(f"{stem}_{suffix}.nii.gz"))


def picked_model(scan_path: str, model_paths: list[str]) -> str:
    """The one model of ``model_paths`` whose input voxel size, turned onto the scan's axes, is nearest the scan's
    (:func:`mrisr.inference.voxel_fit.nearest_model`), logged with why in one line; the only one, if one."""
    from .inference.voxel_fit import nearest_model, ras_voxel_mm
    from .model.modelfile import read_model_file

    if len(model_paths) == 1:
        return model_paths[0]
    inputs = {path: read_model_file(path)[0].input_voxel_mm for path in model_paths}
    path, why = nearest_model(inputs, ras_voxel_mm(load_volume(scan_path)))
    logging.info("%s: %s", scan_path, why)
    return path


def super_resolve_command(args: argparse.Namespace) -> None:
    """Super-resolve a T1w scan at the model's factor, on its own grid, in its own orientation and units."""
    import torch

    from .inference.scan import ScanOutputs, super_resolve_scan
    from .model.modelfile import read_model_file
    from .provenance import provenance

    if args.fast and args.uncertainty:
        raise MrisrError("--fast takes one pass and draws no samples, so it makes no uncertainty map; "
                         "leave out --uncertainty or --fast")
    torch.set_num_threads(args.threads)
    model = picked_model(args.input, args.model)
    spec, _ = read_model_file(model)
    settings = {**spec.sampler, "device": args.device, **(FAST if args.fast else {})}
    settings.update({key: getattr(args, option) for option, key in SAMPLER_OPTIONS.items()
                     if getattr(args, option) is not None})
    if args.no_autocast:
        settings["autocast"] = False
    if args.interval is not None:
        settings["interval"] = args.interval
    if args.consistency_degradation is not None:
        settings["consistency_degradation"] = {"name": args.consistency_degradation,
                                               "operator": args.consistency_degradation, "noise_std": 0.0}
    changed = sorted(key for key in ("steps", "n_samples", "eta", "data_consistency", "consistency_degradation",
                                     "estimate")
                     if settings.get(key) != spec.sampler.get(key))
    if args.uncertainty and changed:
        logging.warning("sampler settings %s differ from those the model file was calibrated with: its intervals "
                        "may not hold their level", ", ".join(changed))
    outputs = ScanOutputs(args.output, args.uncertainty, args.mask, sidecar_path(args.output))
    if args.uncertainty:  # a calibrated model's maps go beside the estimate (an uncalibrated one writes the sd only)
        outputs.scale, outputs.lower, outputs.upper = (beside(args.output, name)
                                                       for name in ("scale", "lower", "upper"))
    super_resolve_scan(args.input, model, settings, outputs, args.seed, skull_strip=args.skull_strip,
                       bias_correction=args.bias_correction, normalize=args.normalize, brain_only=args.brain_only,
                       voxel_size_check=not args.ignore_voxel_size, provenance=provenance(Path(__file__).parent))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrisr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sr = commands.add_parser(
        "super-resolve", help="super-resolve a T1w scan (a head or a brain) with a trained model",
        description="Super-resolve a T1w scan: reoriented, bias-corrected, skull-stripped and normalised as the "
                    "training brains were, the brain super-resolved, the result written on the scan's own grid "
                    "refined by the model's factor, in its own orientation and units (cubic interpolation "
                    "outside the brain), with a JSON sidecar. An estimate that does not reproduce the scan is "
                    "not written.")
    sr.add_argument("input", help="low-resolution T1w NIfTI (3D): a head or a skull-stripped brain")
    # One path per --model (not nargs="+", which would take a scan given after it for a model too).
    sr.add_argument("--model", required=True, action="append",
                    help="model.pt written by the workflow's train rule; give --model again for several, and the one "
                         "whose input voxel size, turned onto the scan's axes, is nearest the scan's is used (a model "
                         "thick along z takes a scan thick along x)")
    sr.add_argument("--output", required=True, help="super-resolved NIfTI to write (a JSON sidecar goes beside it)")
    sr.add_argument("--uncertainty",
                    help="also write the voxel-wise sample sd here and, with a calibrated model, its error scale and "
                         "the interval's bounds beside the output (<output>_scale, _lower, _upper.nii.gz)")
    sr.add_argument("--interval", type=float,
                    help="level of the calibrated interval written with --uncertainty (default: the model file's)")
    sr.add_argument("--mask", help="also write the brain mask used, on the output grid")
    sr.add_argument("--brain-only", action="store_true", help="zero outside the brain (default: cubic there)")
    sr.add_argument("--fast", action="store_true", help="a preview: one network pass, no samples, no uncertainty")
    sr.add_argument("--skull-strip", default="auto", choices=["auto", "robex", "atlas", "none"],
                    help="auto: none for a skull-stripped scan, ROBEX for a head (default); atlas: ROBEX's "
                         "reference head registered to the scan (faster, coarser); none: the scan's foreground "
                         "is the brain")
    sr.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                    help="skip the N4 bias-field correction")
    sr.add_argument("--steps", type=int, help="DDIM steps (default: the model file's)")
    sr.add_argument("--samples", type=int, help="samples drawn, their sd the uncertainty (default: the model file's)")
    sr.add_argument("--estimate", choices=["one_pass", "mean"],
                    help="the one-pass posterior mean, or the mean of the samples (default: the model file's)")
    sr.add_argument("--eta", type=float, help="DDIM stochasticity (default: the model file's)")
    sr.add_argument("--data-consistency", action=argparse.BooleanOptionalAction, default=None,
                    help="back-project every estimate onto the input (default: the model file's)")
    sr.add_argument("--consistency-degradation", choices=PLAIN_OPERATORS,
                    help="how the scan was made, as data consistency assumes it: kspace for a scan acquired at its "
                         "low resolution, block for one averaged down (default: the model file's, the spline of its "
                         "training pairs)")
    sr.add_argument("--seed", type=int, default=0)
    sr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sr.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    sr.add_argument("--no-normalize", dest="normalize", action="store_false",
                    help="the input is already in the training units (white matter at 0.75), e.g. a pair's LR")
    sr.add_argument("--no-autocast", action="store_true", help="sample in float32 instead of bf16")
    sr.add_argument("--ignore-voxel-size", action="store_true",
                    help="skip the check that the input's voxel size fits the model")
    sr.set_defaults(run=super_resolve_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    return exit_status(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())

"""The ``mrisr`` command: use a trained model without the workflow."""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from .io import MrisrError, load_volume, save_volume, voxel_sizes


def super_resolve_command(args: argparse.Namespace) -> None:
    """Super-resolve any T1w NIfTI at the model's factor, in the input's own orientation and units."""
    import torch

    from .degrade import hr_grid_for
    from .model import resolve_device
    from .preprocess import WHITE_MATTER_LEVEL, white_matter_peak
    from .sample import condition_from_lr, load_model, sample_volume

    torch.set_num_threads(args.threads)
    image = load_volume(args.input)
    device = resolve_device(args.device)
    network, diffusion, bundle = load_model(args.model, device)
    factor = np.asarray(bundle["factor"], float)
    expected_mm = np.asarray(bundle.get("hr_voxel_mm", [np.nan] * 3)) * factor
    input_mm = voxel_sizes(image.affine)
    if not args.ignore_voxel_size and np.all(np.isfinite(expected_mm)) and np.any(
            np.abs(input_mm / expected_mm - 1) > 0.25):
        raise MrisrError(
            f"{args.input}: voxel size {input_mm.round(2).tolist()} mm, but the model turns "
            f"{expected_mm.round(2).tolist()} mm scans into {np.asarray(bundle['hr_voxel_mm']).round(2).tolist()} mm "
            f"(factor {factor.tolist()}); use a model trained for this factor, or --ignore-voxel-size")

    volume = image.get_fdata(dtype=np.float32)
    # Same normalisation as training: the white-matter peak of the foreground maps to WHITE_MATTER_LEVEL.
    scale = white_matter_peak(volume[volume > 0]) / WHITE_MATTER_LEVEL if args.normalize else 1.0
    hr_shape, hr_affine = hr_grid_for(image.affine, image.shape, factor)
    condition = condition_from_lr(np.clip(volume / scale, 0, 1), hr_shape)
    mean, std = sample_volume(
        condition, network, diffusion, bundle["residual_scale"], steps=args.steps, n_samples=args.samples,
        patch_size=bundle.get("patch_size", (32, 32, 32)), seed=args.seed, device=device,
        autocast=not args.no_autocast,
    )
    save_volume(mean * scale, hr_affine, args.output, description="mrisr super-resolved")
    if args.uncertainty:
        save_volume(std * scale, hr_affine, args.uncertainty, description="mrisr SR sample sd")
    logging.getLogger("mrisr").info("wrote %s (%s voxels of %s mm)", args.output, hr_shape,
                                    voxel_sizes(hr_affine).round(3).tolist())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrisr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sr = commands.add_parser("super-resolve", help="super-resolve a T1w NIfTI with a trained model")
    sr.add_argument("input", help="low-resolution T1w NIfTI (3D)")
    sr.add_argument("--model", required=True, help="model.pt written by the workflow's train rule")
    sr.add_argument("--output", required=True, help="super-resolved NIfTI to write")
    sr.add_argument("--uncertainty", help="also write the voxel-wise sample sd here")
    sr.add_argument("--steps", type=int, default=10, help="DDIM steps (default 10)")
    sr.add_argument("--samples", type=int, default=4, help="samples averaged into the estimate (default 4)")
    sr.add_argument("--seed", type=int, default=0)
    sr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sr.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    sr.add_argument("--no-normalize", dest="normalize", action="store_false",
                    help="input is already scaled to [0, 1] as in training")
    sr.add_argument("--no-autocast", action="store_true", help="sample in float32 instead of bf16")
    sr.add_argument("--ignore-voxel-size", action="store_true",
                    help="skip the check that the input's voxel size fits the model")
    sr.set_defaults(run=super_resolve_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        args.run(args)
    except MrisrError as error:
        print(f"mrisr: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``mrisr`` command: use a trained model without the workflow."""

from __future__ import annotations

import argparse
import logging
import sys

from .io import MrisrError

# Command-line options that override the model file's sampler defaults.
SAMPLER_OPTIONS = {"steps": "steps", "samples": "n_samples", "estimate": "estimate", "eta": "eta",
                   "data_consistency": "data_consistency"}


def super_resolve_command(args: argparse.Namespace) -> None:
    """Super-resolve any T1w NIfTI at the model's factor, in the input's own orientation and units."""
    import torch

    from .modelfile import read_model_file
    from .sample import super_resolve_file

    torch.set_num_threads(args.threads)
    spec, _ = read_model_file(args.model)
    settings = {**spec.sampler, "device": args.device}
    settings.update({key: getattr(args, option) for option, key in SAMPLER_OPTIONS.items()
                     if getattr(args, option) is not None})
    if args.no_autocast:
        settings["autocast"] = False
    super_resolve_file(args.input, [(args.model, settings)], args.output, args.uncertainty, args.seed,
                       normalize=args.normalize, voxel_size_check=not args.ignore_voxel_size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrisr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sr = commands.add_parser("super-resolve", help="super-resolve a T1w NIfTI with a trained model")
    sr.add_argument("input", help="low-resolution T1w NIfTI (3D)")
    sr.add_argument("--model", required=True, help="model.pt written by the workflow's train rule")
    sr.add_argument("--output", required=True, help="super-resolved NIfTI to write")
    sr.add_argument("--uncertainty", help="also write the voxel-wise sample sd here")
    sr.add_argument("--steps", type=int, help="DDIM steps (default: the model file's)")
    sr.add_argument("--samples", type=int, help="samples drawn, their sd the uncertainty (default: the model file's)")
    sr.add_argument("--estimate", choices=["one_pass", "mean"],
                    help="the one-pass posterior mean, or the mean of the samples (default: the model file's)")
    sr.add_argument("--eta", type=float, help="DDIM stochasticity (default: the model file's)")
    sr.add_argument("--data-consistency", action=argparse.BooleanOptionalAction, default=None,
                    help="back-project every estimate onto the input (default: the model file's)")
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

"""A trained workflow model's PSNR and high-frequency error against DDIM steps, eta and samples, on the test subjects.

    .venv/bin/python benchmarks/sampler_steps.py WORKDIR    # a workdir where `make run` (or snakemake) finished

One torch thread; prints one JSON row per (subject, steps, eta, samples), with the paired difference to cubic
spline on the same voxels. The table it gave is in docs/decisions.md (why `sample.steps` is 5).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from quality import pair_paths, read_split

from mrisr.degrade import upsample
from mrisr.metrics import high_frequency_error, psnr
from mrisr.sample import condition_from_lr, load_model, sample_volume
from mrisr.train import read_pair

SETTINGS = [(1, 0.0, 1), (2, 0.0, 1), (5, 0.0, 1), (10, 0.0, 1), (10, 1.0, 4)]  # (DDIM steps, eta, samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(1)
    network, diffusion, bundle = load_model(str(next((args.workdir / "results").glob("models/*/model.pt"))))
    for subject in read_split(args.workdir)["test"]:
        hr, lr, mask = read_pair(pair_paths(args.workdir, subject))
        cubic = np.clip(upsample(lr, hr.shape, "cubic"), 0, 1)
        for steps, eta, samples in SETTINGS:
            mean, spread = sample_volume(condition_from_lr(lr, hr.shape), network, diffusion, bundle["residual_scale"],
                                         steps, samples, eta, seed=args.seed)
            row = {"subject": subject, "steps": steps, "eta": eta, "samples": samples,
                   "psnr_brain": round(psnr(hr, mean, mask), 3),
                   "vs_cubic": round(psnr(hr, mean, mask) - psnr(hr, cubic, mask), 3),
                   "hf_error_brain": round(high_frequency_error(hr, mean, mask), 4),
                   "hf_error_brain_cubic": round(high_frequency_error(hr, cubic, mask), 4)}
            if samples > 1:
                error = np.abs(mean - hr)[mask]
                row["uncertainty_error_corr"] = round(float(np.corrcoef(spread[mask], error)[0, 1]), 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

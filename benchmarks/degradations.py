"""How far apart the config's degradations are on a real brain: cubic interpolation and back-projection (assuming
pairs.degradation) from the LR each one makes, scored in the brain. One table.

    .venv/bin/python benchmarks/degradations.py            # MNI152 2009c (nilearn), 1 mm, factor 2: under a minute

The brain is normalised as preprocessing does it (divided by its 99.5th percentile, clipped to [0, 1]) and cropped
to a multiple of the factor, so every operator sees whole blocks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import load_config  # noqa: E402
from mrisr.data.embedded import mni152_path  # noqa: E402
from mrisr.evaluation.metrics import psnr  # noqa: E402
from mrisr.evaluation.scoring import baseline_estimate  # noqa: E402
from mrisr.model.spec import degradation_of  # noqa: E402
from mrisr.pairs.degrade import degrade  # noqa: E402


def normalised_brain(path: Path, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The volume in [0, 1] and its brain (non-zero voxels of the skull-stripped template), cropped to whole blocks."""
    volume = nib.load(path).get_fdata(dtype=np.float32)
    volume = volume[tuple(slice(0, n - n % factor) for n in volume.shape)]
    brain = volume > 0
    return np.clip(volume / np.percentile(volume[brain], 99.5), 0, 1).astype(np.float32), brain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = load_config()
    hr, brain = normalised_brain(mni152_path(), args.factor)
    assumed = degradation_of(config)
    rows = []
    for name, degradation in config["degradations"].items():
        lr = degrade(hr, args.factor, degradation, np.random.default_rng(args.seed))
        row = {"degradation": name}
        for method in ("cubic", "back_projection"):
            estimate = np.clip(baseline_estimate(method, lr, hr.shape, args.factor, assumed,
                                                 config["evaluate"]["back_projection_iterations"]), 0, 1)
            row[f"{method} PSNR brain (dB)"] = round(psnr(hr, estimate, brain), 2)
        rows.append(row)
    print(f"MNI152 2009c, {hr.shape} at 1 mm, factor {args.factor}; back-projection assumes "
          f"{config['pairs']['degradation']}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()

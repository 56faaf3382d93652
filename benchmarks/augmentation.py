"""Evidence behind train.sharpness_augment and train.intensity_augment: held-out gain of the regression model.

Each variant trains the regression U-Net (the diffusion model's warm-start phase: x0 at t = T) under one step
budget on the split's training and validation subjects, then scores it on the held-out test subjects against cubic
spline on the same voxels. The ``oracle`` variant trains on the first test subject itself: what this budget could
learn if the training brains were the test brain, an upper bound for the others. See docs/decisions.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from quality import (
    REPO,
    merge,
    pair_paths,
    read_split,
    read_yaml,
    regress,
    run_workflow_to_pairs,
    train_model,
)

from mrisr.degrade import upsample
from mrisr.metrics import psnr
from mrisr.sample import condition_from_lr
from mrisr.train import load_pairs, read_pair

# name: (sharpness_augment, intensity_augment, train on the first test subject)
SHARPNESS = [0.4, 0.8, 1.2, 1.6]  # the defaults in config/config.yaml
VARIANTS = {
    "none": ([], 0.0, False),
    "intensity": ([], 0.1, False),
    "sharpness": (SHARPNESS, 0.0, False),
    "sharpness+intensity": (SHARPNESS, 0.1, False),
    "oracle": ([], 0.0, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "results" / "benchmark")
    parser.add_argument("--config", type=Path, help="yaml merged over config/config.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    args = parser.parse_args()
    torch.set_num_threads(1)  # see docs/decisions.md: one thread trains fastest on these machines
    config = merge(read_yaml(REPO / "config/config.yaml"), read_yaml(args.config))
    args.workdir.mkdir(parents=True, exist_ok=True)
    config_path = args.workdir / "augmentation_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_workflow_to_pairs(args.workdir, config_path, cores=2)
    split = read_split(args.workdir)
    scale, seed = config["diffusion"]["residual_scale"], config["seed"]
    paths = lambda s: pair_paths(args.workdir, s)
    tests = {s: read_pair(paths(s)) for s in split["test"]}  # (hr, lr, mask), read once for every variant
    budget = argparse.Namespace(batch=config["train"]["batch_size"], workdir=args.workdir)
    rows = []
    for name in args.variants.split(","):
        sharpness, intensity, oracle = VARIANTS[name]
        subjects = split["test"][:1] if oracle else split["train"] + split["val"]
        variant = merge(config, {"train": {"sharpness_augment": sharpness, "intensity_augment": intensity}})
        pairs = load_pairs({s: paths(s) for s in subjects}, scale, sharpness, config["pairs"], seed)
        print(f"training {name} on {subjects} ({len(pairs)} pairs) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        network = train_model((pairs, []), variant, budget, args.steps, True, config["train"]["patch_size"], seed)
        seconds = time.perf_counter() - started
        for subject, (hr, lr, mask) in tests.items():
            estimate = regress(condition_from_lr(lr, hr.shape), network, config, config["sample"]["patch_size"], seed)
            cubic = np.clip(upsample(lr, hr.shape, "cubic"), 0, 1)
            rows.append({"variant": name, "subject": subject, "trained_on": "+".join(subjects),
                         "psnr_brain": psnr(hr, estimate, mask), "psnr_brain_cubic": psnr(hr, cubic, mask),
                         "train_seconds": seconds})
    table = pd.DataFrame(rows).assign(gain=lambda t: t["psnr_brain"] - t["psnr_brain_cubic"])
    gains = table.pivot(index="variant", columns="subject", values="gain").reindex(args.variants.split(","))
    print(gains.round(2).to_string())
    (args.workdir / "augmentation.json").write_text(json.dumps(
        {"steps": args.steps, "rows": rows, "split": split}, indent=1))


if __name__ == "__main__":
    main()

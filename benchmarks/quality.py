"""Quality benchmark: interpolation, regression U-Net, diffusion, tri-planar 2D and a 4x cascade, one table.

Runs the real workflow up to the pairs (identical preprocessing), trains every model under the same
step budget on the split's training subjects, scores every method on the same voxels of the held-out
test subjects and writes ``<workdir>/quality.json``. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import psutil
import torch
import yaml

from mrisr.degrade import as_factors, degrade, lr_affine_for, resample, upsample
from mrisr.diffusion import GaussianDiffusion
from mrisr.io import load_volume, save_volume, write_json
from mrisr.metrics import evaluate_volume, method_summary
from mrisr.model import UNet3D, resolve_device
from mrisr.provenance import provenance
from mrisr.sample import condition_from_lr, sample_volume, sliding_window
from mrisr.train import TrainSettings, load_pairs, train

REPO = Path(__file__).resolve().parents[1]
SMOKE = {"config": REPO / "tests/data/tiny.yaml", "ddim_steps": "2,3", "samples": "2"}


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge, as Snakemake merges a --configfile over the defaults."""
    merged = dict(base)
    for key, value in (override or {}).items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if nested else value
    return merged


def read_split(workdir: Path) -> dict[str, list[str]]:
    """The workflow's split record, ``results/split.tsv``, as role -> subjects."""
    roles = pd.read_csv(workdir / "results" / "split.tsv", sep="\t")
    return {role: roles.loc[roles["role"] == role, "subject"].tolist() for role in ("train", "val", "test")}


def pair_paths(workdir: Path, subject: str) -> dict[str, str]:
    """A subject's ``hr``, ``lr`` and brain ``mask`` files in the workflow's results."""
    results = workdir / "results"
    return {"hr": str(results / "pairs" / subject / "hr.nii.gz"), "lr": str(results / "pairs" / subject / "lr.nii.gz"),
            "mask": str(results / "preproc" / subject / "brain_mask.nii.gz")}


def run_workflow_to_pairs(workdir: Path, config_path: Path, cores: int) -> None:
    """The workflow's own fetch/preprocess/pairs (and split record), reusing whatever is already in ``workdir``."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", str(cores), "--configfile", str(config_path), "--until", "pairs", "write_split"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")


@contextmanager
def measured(record: dict, prefix: str) -> Iterator[None]:
    """Add the block's wall seconds to ``record`` and keep its peak memory above the starting level.

    CPU: resident set size polled every 10 ms with psutil; CUDA: also torch's peak allocation.
    """
    process, stop = psutil.Process(), threading.Event()
    start_rss = peak = process.memory_info().rss
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        start_cuda = torch.cuda.memory_allocated()

    def poll() -> None:
        nonlocal peak
        while not stop.wait(0.01):
            peak = max(peak, process.memory_info().rss)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        record[f"{prefix}_seconds"] = record.get(f"{prefix}_seconds", 0.0) + time.perf_counter() - started
        peak_mb = (max(peak, process.memory_info().rss) - start_rss) / 2**20
        record[f"{prefix}_peak_mb"] = max(record.get(f"{prefix}_peak_mb", 0.0), peak_mb)
        if torch.cuda.is_available():
            cuda_mb = (torch.cuda.max_memory_allocated() - start_cuda) / 2**20
            record[f"{prefix}_cuda_peak_mb"] = max(record.get(f"{prefix}_cuda_peak_mb", 0.0), cuda_mb)


def train_model(pairs: tuple, config: dict, budget: argparse.Namespace, steps: int, regression: bool,
                patch: list[int], seed: int, spatial_dims: int = 3) -> UNet3D:
    """Train one network on ``pairs`` = (train, val); ``regression`` trains only at t = T-1 (warm start = steps)."""
    train_cfg = config["train"]
    scale = steps / train_cfg["steps"]  # warm-up and warm start keep their share of a changed budget
    warm_start = steps if regression else round(train_cfg["warm_start_steps"] * scale)
    settings = TrainSettings(**{
        **train_cfg, "steps": steps, "batch_size": budget.batch, "patch_size": patch, "seed": seed,
        "warmup_steps": max(1, round(train_cfg["warmup_steps"] * scale)), "warm_start_steps": warm_start,
        "checkpoint_every": steps + 1, "val_every": steps, "log_every": min(train_cfg["log_every"], steps)})
    checkpoint = budget.workdir / "no_checkpoint.pt"  # never written (checkpoint_every > steps): nothing to resume
    checkpoint.unlink(missing_ok=True)
    model = {**config["model"], "spatial_dims": spatial_dims}
    network, _ = train(*pairs, model, diffusion_args(config), settings, checkpoint, "benchmark",
                       residual_target=config["diffusion"]["residual_scale"] > 0)
    return network.eval()


def diffusion_args(config: dict) -> dict:
    """GaussianDiffusion arguments, always x0 prediction (the regression models need it)."""
    return {**{k: v for k, v in config["diffusion"].items() if k != "residual_scale"}, "prediction": "x0"}


@torch.inference_mode()
def regress(condition: np.ndarray, network: UNet3D, config: dict, patch: list[int], seed: int) -> np.ndarray:
    """One pass at t = T-1 from seeded noise, patch-wise: the regression models' prediction on the HR grid."""
    diffusion, sample_cfg = GaussianDiffusion(**diffusion_args(config)), config["sample"]
    device, scale = resolve_device(sample_cfg["device"]), config["diffusion"]["residual_scale"]
    noise = torch.randn((1, *condition.shape), generator=torch.Generator().manual_seed(seed)) * diffusion.noise_std
    stacked = torch.cat([noise, torch.from_numpy(condition.astype(np.float32) * 2 - 1)[None]]).to(device)
    network, t = network.to(device), diffusion.timesteps - 1

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sample_cfg["autocast"]):
            return network(batch, torch.full((len(batch),), t, device=device))

    x0 = sliding_window(stacked, patch, predict, sample_cfg["overlap"], sample_cfg["batch_size"])[0].cpu().numpy()
    return np.clip(condition + x0 / scale if scale > 0 else (x0 + 1) / 2, 0, 1)


def make_x4_pairs(workdir: Path, subjects: list[str], config: dict) -> dict[str, dict[str, str]]:
    """LR at factor f*f (the workflow's degradation), the noise-free LR at f and the mask on the LR-f grid."""
    pairs_cfg, paths = config["pairs"], {}
    factor = as_factors(pairs_cfg["factor"])
    for subject in subjects:
        folder = workdir / "results" / "pairs" / subject
        hr_image = load_volume(folder / "hr.nii.gz")
        hr, affine = hr_image.get_fdata(dtype=np.float32), hr_image.affine
        mask = load_volume(workdir / "results" / "preproc" / subject / "brain_mask.nii.gz").get_fdata(dtype=np.float32)
        lr_f = degrade(hr, factor, pairs_cfg["order"], pairs_cfg["antialias"])
        lr_ff = degrade(hr, factor**2, pairs_cfg["order"], pairs_cfg["antialias"], pairs_cfg["noise_std"],
                        np.random.default_rng(config["seed"]))
        out = workdir / "results" / "pairs_x4" / subject
        paths[subject] = {"hr": str(folder / "hr.nii.gz"), "lr_f": str(out / "lr_f.nii.gz"),
                          "lr_ff": str(out / "lr_ff.nii.gz"), "mask_lr_f": str(out / "mask_lr_f.nii.gz")}
        lr_f_affine = lr_affine_for(affine, hr.shape, lr_f.shape)
        save_volume(lr_f, lr_f_affine, paths[subject]["lr_f"])
        save_volume(lr_ff, lr_affine_for(affine, hr.shape, lr_ff.shape), paths[subject]["lr_ff"])
        mask_lr_f = (resample(mask, lr_f.shape, order=1) > 0.5).astype(np.float32)
        save_volume(mask_lr_f, lr_f_affine, paths[subject]["mask_lr_f"])
    return paths


def run(args: argparse.Namespace) -> dict:
    """Everything: data, training, inference, scoring; returns the JSON document."""
    config = merge(read_yaml(REPO / "config/config.yaml"), read_yaml(args.config))
    budget = {"steps": args.steps, "batch_size": args.batch, "patch_size": args.patch}
    config["train"].update({key: value for key, value in budget.items() if value is not None})
    args.steps, args.batch = config["train"]["steps"], config["train"]["batch_size"]
    args.patch = list(config["train"]["patch_size"])
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench_config = args.workdir / "benchmark_config.yaml"
    bench_config.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    run_workflow_to_pairs(args.workdir, bench_config, args.cores)
    split = read_split(args.workdir)
    if not split["train"] or not split["test"] or set(split["test"]) & set(split["train"] + split["val"]):
        sys.exit(f"benchmark needs disjoint, non-empty train and test subjects; split: {split}")
    seed, scale = config["seed"], config["diffusion"]["residual_scale"]
    files = lambda s: tuple(pair_paths(args.workdir, s).values())  # (hr, lr, mask)
    x4 = make_x4_pairs(args.workdir, split["train"] + split["val"] + split["test"], config)

    def pairs_of(paths, factor) -> tuple[list, list]:
        """(train, val) pairs; the training ones get the config's blurred copies, as in the workflow."""
        degradation, sharpness = {**config["pairs"], "factor": factor}, config["train"].get("sharpness_augment", [])
        return (load_pairs({s: paths(s) for s in split["train"]}, scale, sharpness, degradation, seed),
                load_pairs({s: paths(s) for s in split["val"]}, scale))

    factor = as_factors(config["pairs"]["factor"])
    pairs_2x = pairs_of(lambda s: pair_paths(args.workdir, s), factor)
    pairs_f = pairs_of(lambda s: {"hr": x4[s]["lr_f"], "lr": x4[s]["lr_ff"], "mask": x4[s]["mask_lr_f"]},
                       factor)  # LR f*f -> LR f
    pairs_ff = pairs_of(lambda s: {"hr": x4[s]["hr"], "lr": x4[s]["lr_ff"], "mask": files(s)[2]}, factor**2)

    info: dict[str, dict] = {}

    def fit(name: str, *fit_args, **fit_kwargs) -> UNet3D:
        print(f"training {name} ...", file=sys.stderr, flush=True)
        with measured(info.setdefault(name, {}), "train"):
            return train_model(*fit_args, **fit_kwargs)

    train_model(pairs_2x, config, args, 2, True, args.patch, seed)  # warm-up: one-time setup billed to no method
    regression = fit("regression", pairs_2x, config, args, args.steps, True, args.patch, seed)
    diffusion_net = fit("diffusion", pairs_2x, config, args, args.steps, False, args.patch, seed)
    sample_cfg, k_max = config["sample"], max(args.samples)
    patch = list(sample_cfg["patch_size"])  # inference patch, as in the workflow
    slab = lambda size, axis: [1 if a == axis else n for a, n in enumerate(size)]  # one slice thick along axis
    planes = [(slab(patch, axis), fit("triplanar2d", pairs_2x, config, args, max(1, args.steps // 3), True,
                                      slab(args.patch, axis), seed + axis, 2)) for axis in range(3)]
    stage1 = fit("cascade_x4", pairs_f, config, args, args.steps, True, args.patch, seed)
    info["cascade_x4"]["train_seconds"] += info["regression"]["train_seconds"]  # stage 2 is the regression model
    for key in ("train_peak_mb", "train_cuda_peak_mb"):
        if key in info["regression"]:
            info["cascade_x4"][key] = max(info["cascade_x4"][key], info["regression"][key])
    single = fit("single_x4", pairs_ff, config, args, 2 * args.steps, True, args.patch, seed)

    diffusion = GaussianDiffusion(**diffusion_args(config))
    sample_options = {k: sample_cfg[k] for k in ("eta", "overlap", "batch_size", "autocast", "patch_size")}
    sample_options["device"] = resolve_device(sample_cfg["device"])
    rows, correlations = [], {}
    for subject in split["test"]:
        hr_path, lr_path, mask_path = files(subject)
        hr, lr = (load_volume(p).get_fdata(dtype=np.float32) for p in (hr_path, lr_path))
        mask = load_volume(mask_path).get_fdata(dtype=np.float32) > 0.5
        condition = condition_from_lr(lr, hr.shape)
        estimates = {m: upsample(lr, hr.shape, m) for m in ("nearest", "trilinear", "cubic")}
        print(f"inference on {subject} ...", file=sys.stderr, flush=True)
        with measured(info["regression"], "sample"):
            estimates["regression"] = regress(condition, regression, config, patch, seed)
        with measured(info["triplanar2d"], "sample"):
            fused = [regress(condition, network, config, plane_patch, seed) for plane_patch, network in planes]
            estimates["triplanar2d"] = np.mean(fused, axis=0)
        for steps in args.ddim_steps:
            samples, name = [], f"diffusion_ddim{steps}"
            for index in range(k_max):  # sample_volume draws sample i from seed + i: the first K are the K-sample run
                with measured(info.setdefault(name, {}), "sample"):
                    samples.append(sample_volume(condition, diffusion_net, diffusion, scale, steps, 1,
                                                 seed=seed + index, **sample_options)[0])
            for k in sorted({1, *args.samples}):
                estimates[f"{name}_k{k}"] = np.mean(samples[:k], axis=0)
            spread, error = np.std(samples, axis=0)[mask], np.abs(estimates[f"{name}_k{k_max}"] - hr)[mask]
            correlations.setdefault(f"{name}_k{k_max}", []).append(
                float(np.corrcoef(spread, error)[0, 1]) if spread.std() > 0 else float("nan"))
        rows += [{"subject": subject, "method": m, "factor": 2, **evaluate_volume(hr, np.clip(e, 0, 1), mask)}
                 for m, e in estimates.items()]

        lr_ff = load_volume(x4[subject]["lr_ff"]).get_fdata(dtype=np.float32)
        lr_f_shape = load_volume(x4[subject]["lr_f"]).shape
        with measured(info["cascade_x4"], "sample"):
            middle = regress(condition_from_lr(lr_ff, lr_f_shape), stage1, config, patch, seed)
            cascade = regress(condition_from_lr(middle, hr.shape), regression, config, patch, seed)
        with measured(info["single_x4"], "sample"):
            single_estimate = regress(condition_from_lr(lr_ff, hr.shape), single, config, patch, seed)
        estimates_x4 = {"cubic_x4": upsample(lr_ff, hr.shape, "cubic"), "cascade_x4": cascade,
                        "single_x4": single_estimate}
        rows += [{"subject": subject, "method": m, "factor": 4, **evaluate_volume(hr, np.clip(e, 0, 1), mask)}
                 for m, e in estimates_x4.items()]

    table = pd.DataFrame(rows)
    summary = pd.concat([method_summary(table[table["factor"] == factor], baseline=baseline).assign(baseline=baseline)
                         .rename(columns=lambda column: column.replace(f"_vs_{baseline}", "_vs_baseline"))
                         for factor, baseline in ((2, "cubic"), (4, "cubic_x4"))], ignore_index=True)
    n_tests = len(split["test"])
    methods = {}
    for record in summary.to_dict("records"):
        name = record.pop("method")
        ddim = name.startswith("diffusion_ddim")
        sampled = info.get(name.rsplit("_k", 1)[0] if ddim else name, {})  # diffusion: per DDIM setting
        trained = info["diffusion"] if ddim else sampled
        per_sample = sampled["sample_seconds"] / (n_tests * (k_max if ddim else 1)) if sampled else None
        correlation = float(np.nanmean(correlations[name])) if name in correlations else None
        methods[name] = {**record, "factor": 4 if name.endswith("_x4") else 2,
                         **{key: trained.get(key) for key in ("train_seconds", "train_peak_mb", "train_cuda_peak_mb")},
                         "sample_seconds_per_sample": per_sample, "uncertainty_error_corr": correlation}
    return {"methods": methods, "per_subject": rows, "split": split,
            "trained_on": sorted(set(split["train"] + split["val"])), "evaluated_on": split["test"],
            "budget": {"steps": args.steps, "batch": args.batch, "patch": args.patch, "ddim_steps": args.ddim_steps,
                       "samples": args.samples, "smoke": args.smoke, "torch_threads": torch.get_num_threads(),
                       "triplanar_steps_per_plane": max(1, args.steps // 3), "cascade_stage_steps": args.steps,
                       "single_x4_steps": 2 * args.steps},
            "memory": "train_peak_mb: peak resident set size above its level when training started (psutil, polled "
                      "every 10 ms); train_cuda_peak_mb: torch.cuda.max_memory_allocated above the start (GPU only)",
            "config": config, "total_seconds": time.perf_counter() - started,
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                        "device": str(resolve_device(config["train"]["device"])),
                        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
            "provenance": provenance(REPO)}


def read_yaml(path: Path | None) -> dict:
    """A yaml file as a dict (empty for no file)."""
    return (yaml.safe_load(path.read_text()) or {}) if path else {}


def finite_or_none(value: object) -> object:
    """NaN/inf become null so the JSON stays standard."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def print_table(methods: dict) -> None:
    """One fixed-width table; deltas are paired differences to cubic spline at the same factor."""
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    header = (f"{'method':<22}{'PSNR brain':>14}{'dPSNR':>8}{'SSIM brain':>16}{'dSSIM':>9}{'PSNR whole':>11}"
              f"{'SSIM whole':>11}{'HF err':>8}{'train s':>9}{'s/sample':>10}{'peak MB':>9}")
    print(header + "\n" + "-" * len(header))
    for name, m in methods.items():
        print(f"{name:<22}{m['psnr_brain_mean']:>8.2f}±{m['psnr_brain_sd']:<5.2f}{m['psnr_brain_vs_baseline']:>+8.2f}"
              f"{m['ssim_brain_mean']:>10.4f}±{m['ssim_brain_sd']:<5.3f}{m['ssim_brain_vs_baseline']:>+9.4f}"
              f"{m['psnr_whole_mean']:>11.2f}{m['ssim_whole_mean']:>11.4f}{m['hf_error_brain_mean']:>8.4f}"
              f"{fmt(m['train_seconds'], '9.1f'):>9}{fmt(m['sample_seconds_per_sample'], '10.2f'):>10}"
              f"{fmt(m['train_peak_mb'], '9.0f'):>9}")
    print("d = paired difference to cubic spline at the same factor (cubic for x2, cubic_x4 for x4); "
          "peak MB = training RSS increase")


def main() -> None:
    numbers = lambda text: [int(v) for v in text.split(",")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path,
                        help="yaml merged over config/config.yaml (with --smoke: over tests/data/tiny.yaml)")
    parser.add_argument("--workdir", type=Path, default=REPO / "results" / "benchmark")
    parser.add_argument("--steps", type=int, help="training steps per model (default: train.steps)")
    parser.add_argument("--patch", type=numbers, help="training patch, e.g. 32,32,32 (default: train.patch_size)")
    parser.add_argument("--batch", type=int, help="batch size (default: train.batch_size)")
    parser.add_argument("--ddim-steps", type=numbers, help="DDIM step counts (default 5,10,25,50)")
    parser.add_argument("--samples", type=numbers, help="K for mean-of-K diffusion samples (default 4,8); K=1 always")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (tests/data/tiny.yaml, DDIM 2,3, K=2)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for the data stages")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        override = merge(read_yaml(SMOKE["config"]), read_yaml(args.config))
        args.workdir.mkdir(parents=True, exist_ok=True)
        args.config = args.workdir / "smoke_override.yaml"
        args.config.write_text(yaml.safe_dump(override))
    args.ddim_steps = args.ddim_steps or numbers(SMOKE["ddim_steps"] if args.smoke else "5,10,25,50")
    args.samples = args.samples or numbers(SMOKE["samples"] if args.smoke else "4,8")
    document = finite_or_none(run(args))
    write_json(document, args.workdir / "quality.json")
    print_table(document["methods"])
    print(f"wrote {args.workdir / 'quality.json'} ({document['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()

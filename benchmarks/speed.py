"""Speed benchmark: training throughput, the input pipeline at HCP size, training memory against the number of
subjects, whole-brain sampling, and the U-Net's cost per voxel. One table, and `<workdir>/speed.json`.

    make bench-speed                                   # about 15 minutes on 2 CPU cores
    .venv/bin/python benchmarks/speed.py --quick       # under 2 minutes: smaller sizes, a smoke test

Everything runs the package's own code: training is `mrisr.model.launch.launch` (torchrun) on synthetic subjects,
the pipeline is `mrisr.model.dataset.PatchDataset` in a `DataLoader`, sampling is
`mrisr.inference.sampling.sample_volume`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from mrisr.config import merge
from mrisr.pairs.synthetic import synthetic_subjects
from mrisr.inference.sampling import sample_patch_shapes, sample_volume
from mrisr.inference.windows import evaluated_voxels
from mrisr.io import write_json
from mrisr.model.dataset import PatchDataset, StepBatches
from mrisr.model.launch import launch
from mrisr.model.networks import resolve_device
from mrisr.model.spec import ModelSpec, degradation_of, model_spec
from mrisr.provenance import provenance

REPO = Path(__file__).resolve().parents[1]
HCP_SHAPE = (208, 256, 208)  # HCP's 0.7 mm T1w grid
BRAIN_1MM = (144, 176, 152)  # the MNI152 brain box at 1 mm: 3.9 M voxels
# A dense bf16 figure for an H100 SXM (NVIDIA's datasheet, without sparsity), to turn FLOPs into a GPU-bound time.
H100_BF16_FLOPS = 989e12
STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One line on stderr per step of the benchmark, so a long run shows where it is."""
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


def load_config(path: Path | None = None, **train: object) -> dict:
    """config/config.yaml with ``path`` merged over it and ``train`` settings for the diffusion3d model."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if path:
        config = merge(config, yaml.safe_load(path.read_text()))
    return merge(config, {"train": train})


def spec_of(config: dict) -> ModelSpec:
    """The diffusion3d model of ``config``, as the train job would make it (mrisr.model.spec)."""
    return model_spec(config, "diffusion3d", [1.0] * 3, [], {})


def flops_per_voxel(spec: ModelSpec, patch: list[int]) -> float:
    """Multiply-adds x 2 of one forward pass per output voxel: convolutions, linear layers and attention."""
    network = spec.build_network().eval()
    total = 0.0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, (torch.nn.Conv3d, torch.nn.Conv2d)):
            kernel = np.prod(module.kernel_size) * module.in_channels // module.groups
            total += 2.0 * output.numel() * kernel
        elif isinstance(module, torch.nn.Linear):
            total += 2.0 * output.numel() * module.in_features
        elif isinstance(module, torch.nn.MultiheadAttention):
            tokens, channels = inputs[0].shape[1], inputs[0].shape[2]
            total += 2.0 * 2 * tokens * tokens * channels * inputs[0].shape[0]  # scores and weighted sum

    hooks = [m.register_forward_hook(count) for m in network.modules()]
    shape = sample_patch_shapes(spec, patch)[0]
    with torch.no_grad():
        network(torch.zeros(1, 2, *shape), torch.zeros(1, dtype=torch.long))
    for hook in hooks:
        hook.remove()
    return total / np.prod(shape)


def training_speed(config: dict, subjects: dict, processes: int, autocast: bool, steps: int, folder: Path) -> dict:
    """Steps and patches per second of real training (torchrun), timed between two logged steps after warm-up."""
    progress(f"training {steps} steps, {processes} process(es), {'bf16' if autocast else 'fp32'}")
    config = merge(config, {"train": {"steps": steps, "log_every": steps // 2, "val_every": steps,
                                      "checkpoint_every": steps + 1, "autocast": autocast, "device": "cpu",
                                      "warmup_steps": 1, "warm_start_steps": steps // 4}})
    spec = model_spec(config, "diffusion3d", [1.0] * 3, list(subjects), {})
    folder.mkdir(parents=True, exist_ok=True)
    job = {"name": "speed", "spec": asdict(spec), "train_subjects": subjects, "val_subjects": {}, "seed": 0,
           "outputs": {"model": str(folder / "model.pt"), "log": str(folder / "log.csv"),
                       "curves": str(folder / "curves.png"), "checkpoint": str(folder / "checkpoint.pt"),
                       "cache": str(folder / "cache"), "val_cache": str(folder / "val_cache")}}
    launch(job, folder / "job.json", processes, 1, str(folder / "train.log"))
    rows = pd.read_csv(folder / "log.csv")
    first, last = rows.iloc[0], rows.iloc[-1]
    steps_per_second = (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])
    patches = steps_per_second * spec.train["batch_size"] * processes
    return {"processes": processes, "threads_per_process": 1, "autocast_bf16": autocast,
            "steps_per_s": round(steps_per_second, 3), "patches_per_s": round(patches, 2),
            "batch_per_process": spec.train["batch_size"], "patch": spec.train["patch_size"]}


def synthetic_cache(folder: Path, count: int, shape, written: int) -> Path:
    """A training cache of ``count`` HCP-sized pairs; the first ``written`` hold data, the rest are sparse files
    (they read as zeros and take no disk), which is all a memory measurement needs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    foreground = rng.choice(np.prod(shape), 200_000, replace=False).astype(np.uint32)
    foreground.sort()
    pairs = []
    for index in range(count):
        name = f"s{index}"
        for kind in ("target", "condition"):
            array = np.lib.format.open_memmap(folder / f"{name}.{kind}.npy", "w+", np.float32, shape)
            if index < written:
                array[:] = rng.random(shape, np.float32)
            del array
        np.save(folder / f"{name}.foreground.npy", foreground)
        pairs.append({"name": name, "subject": name, "shape": list(shape)})
    (folder / "manifest.json").write_text(json.dumps({"digest": "synthetic", "pairs": pairs}))
    return folder


def pipeline_speed(cache: Path, patch: int, batch: int, workers: int, batches: int) -> float:
    """Batches per second that a DataLoader with ``workers`` workers delivers (after its first batch)."""
    dataset = PatchDataset(cache, [[patch] * 3], 0.9, 0.1, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(0, batches + 1, batch, 0, 1),
                                         num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    for _ in iterator:
        pass
    return batches / (time.perf_counter() - started)


def rss_child(cache: str, steps: int) -> None:
    """In a fresh process: train the default U-Net for ``steps`` steps on the cache; print the peak RSS (MB)."""
    from mrisr.model.training import Distributed, train

    torch.set_num_threads(1)
    spec = spec_of(load_config(steps=steps, log_every=steps, val_every=steps, checkpoint_every=steps + 1,
                               device="cpu", loader_workers=0))
    with tempfile.TemporaryDirectory() as scratch:
        train(spec, Path(cache), Path(cache), Path(scratch) / "checkpoint.pt", "rss", 0, Distributed("cpu"))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def training_rss(folder: Path, subjects: int, steps: int) -> float:
    progress(f"training memory with {subjects} HCP-sized subjects")
    cache = synthetic_cache(folder / f"rss_{subjects}", subjects, HCP_SHAPE, written=min(subjects, 2))
    result = subprocess.run([sys.executable, __file__, "--rss-child", str(cache), "--steps", str(steps)],
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def sampling_speed(config: dict, shape, steps: int, samples: int, threads: int) -> dict:
    """Seconds, peak memory and achieved FLOP/s of sampling one volume; and one large forward pass for reference."""
    progress(f"sampling {shape}, DDIM {steps} x {samples} samples")
    torch.set_num_threads(threads)
    spec = spec_of(config)
    network = spec.build_network().eval()
    torch.nn.init.normal_(network.head[-1].weight, std=1e-3)  # not a zero output: the work is the same either way
    settings = {**spec.sampler, "steps": steps, "n_samples": samples, "device": "cpu", "data_consistency": False}
    condition = np.random.default_rng(0).random(shape, np.float32)
    per_voxel = flops_per_voxel(spec, settings["patch_size"])
    evaluated = sum(evaluated_voxels(shape, window, settings["overlap"], spec.downsampling)
                    for window in sample_patch_shapes(spec, settings["patch_size"]))
    started = time.perf_counter()
    sample_volume(condition, network, spec, settings, seed=0)
    seconds = time.perf_counter() - started
    achieved = per_voxel * evaluated * steps * samples / seconds
    batch = torch.zeros(settings["batch_size"] * samples, 2, *sample_patch_shapes(spec, settings["patch_size"])[0])
    t = torch.zeros(len(batch), dtype=torch.long)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings["autocast"]):
        network(batch, t)
        started = time.perf_counter()
        for _ in range(3):
            network(batch, t)
        reference = per_voxel * batch[:, 0].numel() * 3 / (time.perf_counter() - started)
    return {"shape": list(shape), "voxels": int(np.prod(shape)), "ddim_steps": steps, "samples": samples,
            "threads": threads, "patch": settings["patch_size"], "overlap": settings["overlap"],
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "achieved_gflops": round(achieved / 1e9, 1), "reference_gflops": round(reference / 1e9, 1),
            "fraction_of_reference": round(achieved / reference, 2),
            "overlap_overhead": round(evaluated / np.prod(shape), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke test in under 2 minutes")
    parser.add_argument("--workdir", type=Path, default=REPO / "results" / "speed")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="training processes for the N row")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=40, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child, args.steps)
    quick = args.quick
    args.workdir.mkdir(parents=True, exist_ok=True)
    default, hcp = load_config(), load_config(REPO / "config" / "hcp.yaml")
    record: dict = {"quick": quick, "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                               "processor": platform.processor(),
                                               "device": str(resolve_device("auto"))}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        scratch = Path(scratch)
        subjects = synthetic_subjects(scratch / "subjects", degradation_of(default), 2,
                                      (48, 56, 48) if quick else (96, 112, 96), brain_shaped=True)
        steps = 12 if quick else 60
        record["training"] = [
            training_speed(default, subjects, 1, False, steps, scratch / "train_1_fp32"),
            training_speed(default, subjects, 1, True, steps, scratch / "train_1_bf16"),
            training_speed(default, subjects, args.processes, True, steps, scratch / f"train_{args.processes}_bf16"),
        ]
        hcp_spec = spec_of(hcp)
        hcp_patch, hcp_batch = hcp_spec.train["patch_size"][0], hcp_spec.train["batch_size"]
        progress("input pipeline at HCP size")
        cache = synthetic_cache(scratch / "pipeline", 2 if quick else 4, (104, 128, 104) if quick else HCP_SHAPE,
                                written=2 if quick else 4)
        record["pipeline"] = {"volume": list(HCP_SHAPE), "patch": hcp_patch, "batch": hcp_batch, "batches_per_s": {
            workers: round(pipeline_speed(cache, hcp_patch, hcp_batch, workers, 10 if quick else 100), 1)
            for workers in (0, 2)}}
        counts = (10, 100) if quick else (10, 100, 1000)
        record["training_rss_mb"] = {count: round(training_rss(scratch, count, 10 if quick else 60))
                                     for count in counts}
        record["sampling"] = sampling_speed(default, (64, 80, 64) if quick else BRAIN_1MM, 2 if quick else 10,
                                            2 if quick else 4, min(2, os.cpu_count()))
    spec, hcp_spec = spec_of(default), spec_of(hcp)
    per_voxel = flops_per_voxel(spec, spec.sampler["patch_size"])
    hcp_per_voxel = flops_per_voxel(hcp_spec, hcp_spec.sampler["patch_size"])
    hcp_brain = np.prod(HCP_SHAPE)
    record["flops"] = {
        "default_unet_mflop_per_voxel": round(per_voxel / 1e6, 3),
        "hcp_unet_mflop_per_voxel": round(hcp_per_voxel / 1e6, 3),
        "hcp_brain_sampling_pflop": round(hcp_per_voxel * hcp_brain * hcp_spec.sampler["steps"]
                                         * hcp_spec.sampler["n_samples"] / 1e15, 2),
        "hcp_brain_seconds_at_h100_bf16_peak": round(hcp_per_voxel * hcp_brain * hcp_spec.sampler["steps"]
                                                    * hcp_spec.sampler["n_samples"] / H100_BF16_FLOPS, 1),
        "hcp_training_step_tflop": round(3 * hcp_per_voxel * hcp_patch**3 * hcp_batch / 1e12, 2),
    }
    record["total_seconds"] = round(time.perf_counter() - started)
    record["provenance"] = provenance(REPO)
    write_json(record, args.workdir / "speed.json")
    print_table(record)
    print(f"wrote {args.workdir / 'speed.json'} ({record['total_seconds']} s)")


def print_table(record: dict) -> None:
    rows = [(f"training, {r['processes']} process(es) x 1 thread, {'bf16' if r['autocast_bf16'] else 'fp32'}",
             f"{r['steps_per_s']} steps/s, {r['patches_per_s']} patches/s of {r['patch'][0]}^3")
            for r in record["training"]]
    pipeline = record["pipeline"]
    rows += [(f"input pipeline, {pipeline['batch']} x {pipeline['patch']}^3 from {pipeline['volume']}, "
              f"{workers} workers", f"{value} batches/s") for workers, value in pipeline["batches_per_s"].items()]
    rows += [(f"training peak RSS, {count} HCP-sized subjects", f"{mb} MB")
             for count, mb in record["training_rss_mb"].items()]
    s = record["sampling"]
    rows += [(f"sampling {s['shape']} ({s['voxels'] / 1e6:.1f} M voxels), DDIM {s['ddim_steps']} x {s['samples']} "
              f"samples, {s['threads']} threads", f"{s['seconds']} s, peak {s['peak_rss_mb']} MB"),
             ("  achieved / one large forward pass", f"{s['achieved_gflops']} / {s['reference_gflops']} GFLOP/s "
              f"({s['fraction_of_reference']})"),
             ("  overlap overhead (voxels evaluated / voxels)", f"{s['overlap_overhead']}")]
    flops = record["flops"]
    rows += [("U-Net cost per voxel, default / hcp.yaml", f"{flops['default_unet_mflop_per_voxel']} / "
              f"{flops['hcp_unet_mflop_per_voxel']} MFLOP"),
             ("hcp.yaml sampler on one HCP brain box", f"{flops['hcp_brain_sampling_pflop']} PFLOP: "
              f"{flops['hcp_brain_seconds_at_h100_bf16_peak']} s at an H100's dense bf16 peak")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()

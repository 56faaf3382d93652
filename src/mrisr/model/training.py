"""One training process of a torchrun job (:mod:`mrisr.model.launch` starts them): the training loop.

``python -m mrisr.model.training job.json`` is what each of the N
processes runs, one per GPU (NCCL) or CPU core (gloo). Each process draws its own batch of
``train.batch_size`` patches, so the effective batch is ``batch_size x N``;
the learning rate is not rescaled (docs/decisions/0018-torchrun-data-parallel.md). Only rank 0 writes
files and logs progress.

AdamW with warm-up and cosine decay, EMA weights, bf16 autocast, a
checkpoint every ``checkpoint_every`` steps (and on SIGTERM, which Slurm
sends before a time limit or preemption) that a rerun resumes from exactly:
every step's patches, timesteps and noise derive from ``(seed, step,
rank)``, so nothing else needs restoring.

The first ``warm_start_steps`` steps train only at the last timestep, where
``x_t`` is pure noise and predicting ``x0`` is plain regression of the
residual over the interpolated LR ("predict, then refine"); a
``regression3d`` model trains there throughout.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from ..figures import training_curves
from ..io import MrisrError, atomic_path
from .dataset import PatchDataset, StepBatches, build_cache
from .modelfile import condition_to_network, save_model, target_to_network
from .networks import resolve_device, slab_shapes
from .spec import ModelSpec

log = logging.getLogger("mrisr.model.training")  # also when run as __main__ by torchrun

LOG_COLUMNS = ["step", "loss", "val_loss", "learning_rate", "seconds"]
ERROR_MARK = "mrisr training error: "


def patch_shapes(kind: str, patch_size: list[int]) -> list[list[int]]:
    """The patch shapes one training step draws: the 3D patch, or a tri-planar model's three slabs."""
    return slab_shapes(patch_size) if kind == "triplanar" else [list(patch_size)]


def learning_rate_at(step: int, settings: dict) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    peak, warmup = settings["learning_rate"], settings["warmup_steps"]
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, settings["steps"] - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one process's timesteps, noise and dropout at one step."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def diffusion_loss(network, diffusion, spec: ModelSpec, batches, t: torch.Tensor) -> torch.Tensor:
    """Mean over patch shapes of the MSE between output and the parameterisation's target at timesteps ``t``."""
    losses = []
    for target_image, condition_image in batches:
        target = target_to_network(target_image, condition_image, spec.residual_scale)
        noise = torch.randn_like(target)
        x_t = diffusion.q_sample(target, t, noise)
        inputs = torch.cat([diffusion.network_input(x_t, t), condition_to_network(condition_image)], dim=1)
        output = network(inputs, t)
        losses.append(F.mse_loss(output.float(), diffusion.training_target(target, t, noise)))
    return torch.stack(losses).mean()


def config_digest(*sections: object) -> str:
    """Short hash of the settings a checkpoint belongs to; a checkpoint of other settings is not resumed."""
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Distributed:
    """This process's place in the torchrun job: rank, world size, device, backend."""

    def __init__(self, device_setting: str) -> None:
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = resolve_device(device_setting)
        self.device = torch.device("cuda", self.local_rank) if device.type == "cuda" else device
        self.backend = "nccl" if self.device.type == "cuda" else "gloo"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, value: float) -> float:
        """The sum of ``value`` over all processes."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(tensor)
        return float(tensor.item())


def train(spec: ModelSpec, cache: Path, val_cache: Path, checkpoint_path: Path, digest: str, seed: int,
          world: Distributed) -> tuple[torch.nn.Module, list[dict]]:
    """Train (or resume) and return the EMA network (on rank 0; None elsewhere) and the log rows."""
    settings = spec.train
    device = world.device
    torch.manual_seed(seed)  # the initial weights
    network = spec.build_network().to(device)
    ema = copy.deepcopy(network).requires_grad_(False) if world.main else None
    diffusion = spec.diffusion_process()
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings["learning_rate"],
                                  weight_decay=settings["weight_decay"])
    rows: list[dict] = []
    start, running = 0, [0.0, 0]
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state["digest"] == digest:
            network.load_state_dict(state["network"])
            optimizer.load_state_dict(state["optimizer"])
            if world.main:
                ema.load_state_dict(state["ema"])
            rows, start, running = state["rows"], state["step"], state["running"]
            running[0] *= world.main  # the whole job's running loss, counted once
            if world.main:
                log.info("resuming from %s at step %d", checkpoint_path, start)
        elif world.main:
            log.info("ignoring %s: it belongs to other settings", checkpoint_path)
    model = DistributedDataParallel(network) if world.world > 1 else network

    shapes = patch_shapes(spec.kind, spec.patch_size)
    loader = torch.utils.data.DataLoader(
        PatchDataset(cache, shapes, settings["foreground_fraction"], settings["intensity_augment"], seed,
                     settings["flip_augment"], settings["permute_axes"]),
        batch_sampler=StepBatches(start, settings["steps"], settings["batch_size"], world.rank, world.world),
        num_workers=settings["loader_workers"], pin_memory=device.type == "cuda",
        persistent_workers=settings["loader_workers"] > 0)
    validation = _validation_batch(val_cache, shapes, seed, diffusion.timesteps) if world.main else None
    last_t = diffusion.timesteps - 1
    started = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
    window_start = time.perf_counter()
    with sigterm_requests() as stop_requested:
        for step, batches in enumerate(loader, start=start):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, settings)
            torch.manual_seed(step_seed(seed, step, world.rank))
            batch_size = len(batches[0][0])
            t = torch.randint(0, diffusion.timesteps, (batch_size,), device=device)
            # The one-pass (t = T) estimate is where sampling starts: the warm start trains only there,
            # and afterwards a share of every batch keeps training it.
            at_last = torch.rand(batch_size, device=device) < settings["regression_share"]
            if step < settings["warm_start_steps"]:
                at_last[:] = True
            t = torch.where(at_last, last_t, t)
            batches = [(target.to(device, non_blocking=True), condition.to(device, non_blocking=True))
                       for target, condition in batches]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings["autocast"]):
                loss = diffusion_loss(model, diffusion, spec, batches, t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            if world.main:
                decay = min(settings["ema_decay"], (1 + step) / (10 + step))
                with torch.no_grad():
                    for ema_param, param in zip(ema.parameters(), network.parameters()):
                        ema_param.lerp_(param, 1 - decay)
            running = [running[0] + loss.item(), running[1] + 1]

            done = step + 1
            if done % settings["log_every"] == 0 or done == settings["steps"]:
                mean_loss = world.sum(running[0]) / (running[1] * world.world)
                if world.main:
                    val_loss = ""
                    if done % settings["val_every"] == 0 or done == settings["steps"]:
                        val_loss = _validation_loss(ema, diffusion, spec, validation, device, settings["autocast"])
                    rows.append({"step": done, "loss": mean_loss, "val_loss": val_loss,
                                 "learning_rate": optimizer.param_groups[0]["lr"],
                                 "seconds": round(time.perf_counter() - started, 2)})
                    log.info("step %d/%d  loss %.4f  val %s  lr %.2e  %.2f steps/s", done, settings["steps"],
                             mean_loss, f"{val_loss:.4f}" if val_loss != "" else "-", rows[-1]["learning_rate"],
                             running[1] / (time.perf_counter() - window_start))
                running, window_start = [0.0, 0], time.perf_counter()
            stop = world.any(bool(stop_requested))
            if stop or (done % settings["checkpoint_every"] == 0 and done < settings["steps"]):
                # The checkpoint keeps every process's share of the loss being averaged; rank 0 carries it on.
                total = world.sum(running[0])
                if world.main:
                    _save_checkpoint(checkpoint_path, network, ema, optimizer, rows, done, digest, [total, running[1]])
                world.barrier()
            if stop:
                raise SystemExit(f"stopped by SIGTERM at step {done}; a rerun resumes from {checkpoint_path}")
    return ema, rows


@contextmanager
def sigterm_requests() -> Iterator[list[int]]:
    """Record SIGTERM instead of dying at once: Slurm sends it before a time limit or preemption kills a job."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _validation_batch(cache: Path, shapes: list[list[int]], seed: int, timesteps: int, size: int = 8):
    """Fixed validation patches (all in the brain), timesteps and noise, so val_loss is comparable across steps."""
    dataset = PatchDataset(cache, shapes, 1.0, 0.0, seed + 1)
    items = [dataset[index] for index in range(size)]
    batches = [tuple(torch.stack([item[shape][part] for item in items]) for part in (0, 1))
               for shape in range(len(shapes))]
    t = torch.from_numpy(np.linspace(0, timesteps - 1, size).round().astype(np.int64))
    return batches, t


@torch.no_grad()
def _validation_loss(network, diffusion, spec: ModelSpec, validation, device: torch.device, autocast: bool) -> float:
    batches, t = validation
    torch.manual_seed(0)  # the same noise at every evaluation
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        return float(diffusion_loss(network, diffusion, spec,
                                    [(a.to(device), b.to(device)) for a, b in batches], t.to(device)))


def _save_checkpoint(path: Path, network, ema, optimizer, rows, step, digest, running) -> None:
    state = {"network": network.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
             "rows": rows, "step": step, "digest": digest, "running": running}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    log.info("checkpoint at step %d -> %s", step, path)


def write_log(rows: list[dict], path: Path) -> None:
    """Write the training log CSV atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run_job(job_path: str) -> None:
    """One torchrun process: build the cache (rank 0), train, and (rank 0) write the model, log and figures."""
    job = json.loads(Path(job_path).read_text())
    outputs = job["outputs"]
    world = Distributed(job["spec"]["train"]["device"])
    logging.basicConfig(level=logging.INFO if world.main else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s rank {world.rank} %(name)s %(levelname)s: %(message)s")
    if world.world > 1:
        dist.init_process_group(world.backend, device_id=world.device if world.backend == "nccl" else None)
        processes = [None] * world.world
        this = f"rank {world.rank}: pid {os.getpid()} on {os.uname().nodename}, {world.device}"
        dist.all_gather_object(processes, this)
        log.info("processes: %s", "; ".join(processes))
    if world.device.type == "cpu":
        torch.set_num_threads(job["threads_per_process"])
    try:
        spec = ModelSpec(**{**job["spec"], "train": {**job["spec"]["train"], "processes": world.world}})
        cache_args = (spec.factor, spec.output_factor, spec.degradation, spec.training_degradations)
        if world.main:
            log.info("training %s (%s) on %d subjects, validating on %d; %d process(es) on %s, %s",
                     job["name"], spec.kind, len(job["train_subjects"]), len(job["val_subjects"]), world.world,
                     world.device, world.backend)
            build_cache(job["train_subjects"], outputs["cache"], *cache_args, spec.train["sharpness_augment"],
                        job["seed"])
            build_cache(job["val_subjects"] or job["train_subjects"], outputs["val_cache"], *cache_args, [],
                        job["seed"])
        world.barrier()
        training_settings = {key: value for key, value in job["spec"].items() if key not in ("sampler", "provenance")}
        digest = config_digest(training_settings, sorted(job["val_subjects"]), job["seed"], world.world)
        checkpoint = Path(outputs["checkpoint"])
        ema, rows = train(spec, Path(outputs["cache"]), Path(outputs["val_cache"]), checkpoint, digest, job["seed"],
                          world)
        if world.main:
            save_model(outputs["model"], spec, ema)
            write_log(rows, Path(outputs["log"]))
            training_curves(pd.read_csv(outputs["log"]), outputs["curves"])
            checkpoint.unlink(missing_ok=True)
            shutil.rmtree(outputs["cache"], ignore_errors=True)
            shutil.rmtree(outputs["val_cache"], ignore_errors=True)
        world.barrier()
    except MrisrError as error:
        log.error("%s%s", ERROR_MARK, error)
        raise SystemExit(1) from None
    finally:
        if world.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    run_job(sys.argv[1])

"""Training the conditional diffusion model on random foreground patches.

AdamW with warm-up and cosine decay, EMA weights, bf16 autocast on GPU, a
checkpoint every ``checkpoint_every`` steps that a rerun (for example a
requeued Slurm job) resumes from exactly, and a CSV log that stays continuous
across resumptions.

The first ``warm_start_steps`` steps train only at the last timestep, where
``x_t`` is pure noise and predicting ``x0`` is plain regression of the
residual over the interpolated LR: "predict, then refine". The remaining
steps train over all timesteps.

Two augmentations keep the model from learning the training scans' own
sharpness and intensity scale (the sample data's training brains are all the
MNI152 template): extra copies of every training subject with a blurred HR
and an LR simulated from it (``sharpness_augment``), and a random intensity
scale per patch (``intensity_augment``). docs/decisions.md has the evidence.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch.nn import functional as F

from .degrade import degrade
from .diffusion import GaussianDiffusion
from .figures import comparison_panel, training_curves
from .io import atomic_path, load_volume, voxel_sizes
from .model import UNet3D, resolve_device
from .sample import condition_from_lr, sample_volume

log = logging.getLogger(__name__)

LOG_COLUMNS = ["step", "loss", "val_loss", "learning_rate", "seconds"]


@dataclass
class TrainSettings:
    """The ``train:`` config section."""

    steps: int = 1000
    batch_size: int = 4
    patch_size: Sequence[int] = (32, 32, 32)
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    ema_decay: float = 0.999
    warm_start_steps: int = 0
    sharpness_augment: Sequence[float] = ()
    intensity_augment: float = 0.0
    foreground_fraction: float = 0.9
    checkpoint_every: int = 100
    log_every: int = 25
    val_every: int = 100
    seed: int = 0
    device: str = "auto"


@dataclass
class Pair:
    """One subject's training data on the HR grid: target, conditioning input and brain mask."""

    subject: str
    target: np.ndarray
    condition: np.ndarray
    mask: np.ndarray


def read_pair(paths: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HR, LR and brain mask arrays from a dict of their ``hr``, ``lr`` and ``mask`` paths."""
    hr = load_volume(paths["hr"]).get_fdata(dtype=np.float32)
    lr = load_volume(paths["lr"]).get_fdata(dtype=np.float32)
    return hr, lr, load_volume(paths["mask"]).get_fdata(dtype=np.float32) > 0.5


def load_pairs(
    subjects: dict[str, dict[str, str]], residual_scale: float,
    sharpness_augment: Sequence[float] = (), degradation: dict | None = None, seed: int = 0,
) -> list[Pair]:
    """Pairs of ``subjects`` (ID -> ``hr``/``lr``/``mask`` paths), each followed by its blurred copies."""
    pairs = []
    for subject, paths in subjects.items():
        hr, lr, mask = read_pair(paths)
        pairs.append(make_pair(subject, hr, lr, mask, residual_scale))
        if sharpness_augment:
            pairs += blurred_copies(hr, mask, subject, sharpness_augment, degradation, residual_scale, seed)
    return pairs


def make_pair(subject: str, hr: np.ndarray, lr: np.ndarray, mask: np.ndarray, residual_scale: float) -> Pair:
    """The network's view of a pair: the target is the scaled residual over the cubic interpolation
    (or the image in [-1, 1]), the condition the interpolation in [-1, 1]."""
    condition = condition_from_lr(lr, hr.shape)
    target = (hr - condition) * residual_scale if residual_scale > 0 else hr * 2 - 1
    return Pair(subject, target.astype(np.float32), (condition * 2 - 1).astype(np.float32), mask)


def blurred_copies(
    hr: np.ndarray, mask: np.ndarray, subject: str, sigmas: Sequence[float], degradation: dict,
    residual_scale: float, seed: int,
) -> list[Pair]:
    """One extra pair per ``sigma``: the HR blurred by a Gaussian of ``sigma`` HR voxels, the LR simulated from it.

    Real scans differ in sharpness (scanner, sequence, motion, resampling);
    without this the model learns the one sharpness of its training scans and
    over-sharpens, or under-sharpens, everything else.
    ``degradation`` holds the ``pairs:`` settings that made the real pairs.
    """
    copies = []
    for index, sigma in enumerate(sigmas):
        blurred = ndimage.gaussian_filter(hr, sigma)
        lr = degrade(blurred, degradation["factor"], degradation["order"], degradation["antialias"],
                     degradation.get("noise_std", 0.0), np.random.default_rng([seed, index]))
        copies.append(make_pair(f"{subject}_blur{sigma:g}", blurred, lr, mask, residual_scale))
    return copies


def sample_patches(
    pairs: list[Pair], batch_size: int, patch_size: Sequence[int], foreground_fraction: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``(target, condition)`` patches, centred on the brain with probability ``foreground_fraction``."""
    targets, conditions = [], []
    for _ in range(batch_size):
        pair = pairs[rng.integers(len(pairs))]
        shape = np.asarray(pair.target.shape)
        patch = np.minimum(patch_size, shape)
        if rng.random() < foreground_fraction and pair.mask.any():
            foreground = np.flatnonzero(pair.mask)
            centre = np.array(np.unravel_index(foreground[rng.integers(len(foreground))], shape))
        else:
            centre = np.array([rng.integers(n) for n in shape])
        corner = np.clip(centre - patch // 2, 0, shape - patch)
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        targets.append(pair.target[window])
        conditions.append(pair.condition[window])
    return torch.from_numpy(np.stack(targets))[:, None], torch.from_numpy(np.stack(conditions))[:, None]


def scale_intensity(
    target: torch.Tensor, condition: torch.Tensor, max_log_scale: float, residual: bool, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiply each patch's image (HR and interpolation alike) by exp(U(-max_log_scale, max_log_scale)).

    In network units: a residual target scales like the image; images in
    [-1, 1] (the condition, a non-residual target) are scaled as images in [0, 1].
    """
    scale = torch.from_numpy(np.exp(rng.uniform(-max_log_scale, max_log_scale, len(target))).astype(np.float32))
    scale = scale.view(-1, *([1] * (target.dim() - 1)))
    as_image = lambda x: (x + 1) * scale - 1
    return (target * scale if residual else as_image(target)), as_image(condition)


def learning_rate_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def diffusion_loss(
    network: UNet3D, diffusion: GaussianDiffusion, target: torch.Tensor, condition: torch.Tensor,
    t: torch.Tensor, noise: torch.Tensor,
) -> torch.Tensor:
    """MSE between the network output and the parameterisation's target at timesteps ``t``."""
    x_t = diffusion.q_sample(target, t, noise)
    output = network(torch.cat([x_t, condition], dim=1), t)
    return F.mse_loss(output.float(), diffusion.training_target(target, t, noise))


def config_digest(*sections: dict) -> str:
    """Short hash of the settings a checkpoint belongs to; a checkpoint of other settings is not resumed."""
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train(
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    model_settings: dict,
    diffusion_settings: dict,
    settings: TrainSettings,
    checkpoint_path: Path,
    digest: str,
    *,
    residual_target: bool,
) -> tuple[UNet3D, list[dict]]:
    """Train (or resume) and return the EMA network and the log rows.

    ``residual_target``: the pairs' targets are scaled residuals, not images (the intensity augmentation
    scales the two differently).
    """
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    network = UNet3D(**model_settings).to(device)
    ema = copy.deepcopy(network).requires_grad_(False)
    diffusion = GaussianDiffusion(**diffusion_settings)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    rows: list[dict] = []
    start, running_loss, running_count = 0, 0.0, 0

    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state.get("digest") == digest:
            network.load_state_dict(state["network"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            rows, start, (running_loss, running_count) = state["rows"], state["step"], state["running"]
            log.info("resuming from %s at step %d", checkpoint_path, start)
        else:
            log.info("ignoring %s: it belongs to other settings", checkpoint_path)

    validation = _validation_batch(val_pairs or train_pairs, settings, diffusion.timesteps)
    use_amp = device.type == "cuda"
    started = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
    window_start = time.perf_counter()
    with sigterm_requests() as stop_requested:
        for step in range(start, settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, settings)
            target, condition = sample_patches(
                train_pairs, settings.batch_size, settings.patch_size, settings.foreground_fraction, rng)
            if settings.intensity_augment:
                target, condition = scale_intensity(target, condition, settings.intensity_augment, residual_target, rng)
            target, condition = target.to(device), condition.to(device)
            if step < settings.warm_start_steps:
                t = torch.full((settings.batch_size,), diffusion.timesteps - 1, device=device)
            else:
                t = torch.randint(0, diffusion.timesteps, (settings.batch_size,), device=device)
            noise = torch.randn_like(target)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = diffusion_loss(network, diffusion, target, condition, t, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            decay = min(settings.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for ema_param, param in zip(ema.parameters(), network.parameters()):
                    ema_param.lerp_(param, 1 - decay)
            running_loss += loss.item()
            running_count += 1

            done = step + 1
            if done % settings.log_every == 0 or done == settings.steps:
                val_loss = ""
                if done % settings.val_every == 0 or done == settings.steps:
                    val_loss = _validation_loss(ema, diffusion, validation, device)
                rows.append({
                    "step": done,
                    "loss": running_loss / running_count,
                    "val_loss": val_loss,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - started, 2),
                })
                log.info("step %d/%d  loss %.4f  val %s  lr %.2e  %.2f it/s", done, settings.steps,
                         rows[-1]["loss"], f"{val_loss:.4f}" if val_loss != "" else "-",
                         rows[-1]["learning_rate"], running_count / (time.perf_counter() - window_start))
                running_loss, running_count, window_start = 0.0, 0, time.perf_counter()
            if stop_requested or (done % settings.checkpoint_every == 0 and done < settings.steps):
                _save_checkpoint(checkpoint_path, network, ema, optimizer, rng, rows, done, digest,
                                 (running_loss, running_count))
            if stop_requested:
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


def _validation_batch(pairs: list[Pair], settings: TrainSettings, timesteps: int, size: int = 8):
    """Fixed validation patches, timesteps and noise, so val_loss is comparable across steps."""
    rng = np.random.default_rng(settings.seed + 1)
    target, condition = sample_patches(pairs, size, settings.patch_size, 1.0, rng)
    t = torch.from_numpy(np.linspace(0, timesteps - 1, size).round().astype(np.int64))
    noise = torch.from_numpy(rng.standard_normal(target.shape).astype(np.float32))
    return target, condition, t, noise


@torch.no_grad()
def _validation_loss(network: UNet3D, diffusion: GaussianDiffusion, batch, device: torch.device) -> float:
    target, condition, t, noise = (x.to(device) for x in batch)
    return float(diffusion_loss(network, diffusion, target, condition, t, noise))


def _save_checkpoint(path: Path, network, ema, optimizer, rng, rows, step, digest, running) -> None:
    state = {
        "network": network.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "rows": rows, "step": step, "digest": digest, "running": running,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    log.info("checkpoint at step %d -> %s", step, path)


def write_log(rows: list[dict], path: Path) -> None:
    """Write the training log CSV atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run_training(
    train_subjects: dict[str, dict[str, str]],
    val_subjects: dict[str, dict[str, str]],
    model_settings: dict,
    diffusion_settings: dict,
    train_settings: dict,
    degradation: dict,
    model_path: str,
    log_path: str,
    curves_path: str,
    validation_path: str,
    checkpoint_path: str,
    provenance: dict,
) -> None:
    """Load pairs, train (resuming from a checkpoint of the same settings), write the model, log and figures.

    ``*_subjects`` map a subject ID to its ``hr``, ``lr`` and ``mask`` paths;
    ``degradation`` is the ``pairs:`` section that made them. The checkpoint
    is removed once the model is written: a later run of the same settings
    trains afresh instead of resuming a finished run.
    """
    settings = TrainSettings(**train_settings)
    residual_scale = float(diffusion_settings.get("residual_scale", 0))
    diffusion_args = {k: v for k, v in diffusion_settings.items() if k != "residual_scale"}
    train_pairs = load_pairs(train_subjects, residual_scale, settings.sharpness_augment, degradation, settings.seed)
    val_pairs = load_pairs(val_subjects, residual_scale)
    log.info("training on %d subjects (%s) as %d pairs, validating on %d; device %s", len(train_subjects),
             ", ".join(train_subjects), len(train_pairs), len(val_pairs), resolve_device(settings.device))
    checkpoint = Path(checkpoint_path)
    digest = config_digest(model_settings, diffusion_settings, asdict(settings), degradation,
                           sorted(train_subjects), sorted(val_subjects))
    ema, rows = train(train_pairs, val_pairs, model_settings, diffusion_args, settings, checkpoint, digest,
                      residual_target=residual_scale > 0)
    bundle = {
        "state_dict": ema.state_dict(),
        "model": model_settings,
        "diffusion": diffusion_args,
        "residual_scale": residual_scale,
        "factor": np.broadcast_to(np.asarray(degradation["factor"], float), (3,)).tolist(),
        # The header is enough: load_pairs already read the data.
        "hr_voxel_mm": voxel_sizes(nib.load(next(iter(train_subjects.values()))["hr"]).affine).tolist(),
        "patch_size": list(settings.patch_size),
        "train": asdict(settings),
        "train_subjects": sorted(train_subjects),
        "provenance": provenance,
    }
    with atomic_path(model_path) as tmp:
        torch.save(bundle, tmp)
    write_log(rows, Path(log_path))
    training_curves(pd.read_csv(log_path), curves_path)
    validation_figure((val_pairs or train_pairs)[0], ema, GaussianDiffusion(**diffusion_args), residual_scale,
                      settings, validation_path)
    checkpoint.unlink(missing_ok=True)


def validation_figure(pair: Pair, network: UNet3D, diffusion: GaussianDiffusion, residual_scale: float,
                      settings: TrainSettings, path: str, steps: int = 5) -> None:
    """DDIM samples (5 steps, as the default sampler) of a validation subject's central region beside cubic and HR."""
    size = np.minimum(np.asarray(settings.patch_size) * 2, pair.target.shape)
    corner = (np.asarray(pair.target.shape) - size) // 2
    window = tuple(slice(c, c + n) for c, n in zip(corner, size))
    condition = (pair.condition[window] + 1) / 2
    hr = condition + pair.target[window] / residual_scale if residual_scale > 0 else (pair.target[window] + 1) / 2
    estimate, spread = sample_volume(condition, network, diffusion, residual_scale, steps=steps, n_samples=2,
                                     patch_size=settings.patch_size, seed=settings.seed,
                                     device=next(network.parameters()).device)
    comparison_panel({"cubic spline": condition, "model": estimate, "HR": np.clip(hr, 0, 1)},
                     f"validation subject {pair.subject}, central region", path, error_of="model",
                     uncertainty=spread)

"""Launching a training job: one torchrun process per GPU of the job, or one per CPU core.

The train rule calls :func:`run_training`, which writes the job (the model's
spec, its files, the seed) as JSON and runs ``torchrun --standalone
--nproc-per-node N -m mrisr.model.training job.json``: N processes on one
node, one per GPU (NCCL), or one per CPU core (gloo, one thread each). What
each process does is :mod:`mrisr.model.training`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from ..io import MrisrError
from .spec import ModelSpec
from .training import ERROR_MARK

log = logging.getLogger(__name__)

TORCHRUN_VARIABLE = "MRISR_TORCHRUN"


def process_count(threads: int, gpus: int, device: str) -> tuple[int, int]:
    """How many training processes, and CPU threads each: one per GPU when the job has GPUs, else one per core."""
    if gpus and device != "cpu" and torch.cuda.is_available():
        processes = min(gpus, torch.cuda.device_count())
        return processes, max(1, threads // processes)
    return max(1, threads), 1


def run_training(
    name: str, spec: ModelSpec, train_subjects: dict[str, dict[str, str]], val_subjects: dict[str, dict[str, str]],
    seed: int, folder: str, outputs: dict[str, str], threads: int, gpus: int, log_path: str,
) -> None:
    """The train stage: model ``spec`` trained by torchrun on the job's resources.

    ``*_subjects`` map a subject ID to its ``hr``, ``lr`` and ``mask`` paths.
    The checkpoint and the training cache live in ``folder`` while training runs.
    """
    folder = Path(folder)
    job = {"name": name, "spec": asdict(spec), "train_subjects": train_subjects, "val_subjects": val_subjects,
           "seed": seed,
           "outputs": {**outputs, "checkpoint": str(folder / "checkpoint.pt"), "cache": str(folder / "cache"),
                       "val_cache": str(folder / "val_cache")}}
    processes, threads_per_process = process_count(threads, gpus, spec.train["device"])
    launch(job, folder / "job.json", processes, threads_per_process, log_path)
    (folder / "job.json").unlink()


def torchrun_command(job_path: str | Path, processes: int) -> list[str]:
    """torchrun running :func:`run_job`: on ``processes`` local processes, or as ``$MRISR_TORCHRUN`` says.

    ``MRISR_TORCHRUN`` replaces the launcher (environment variables in it are
    expanded inside the job), for a rendezvous across nodes (README).
    """
    launcher = os.environ.get(TORCHRUN_VARIABLE)
    if launcher:
        prefix = shlex.split(os.path.expandvars(launcher))
    else:
        prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [*prefix, "-m", "mrisr.model.training", str(job_path)]


def launch(job: dict, job_path: str | Path, processes: int, threads_per_process: int, log_path: str) -> None:
    """Run the training job with torchrun on ``processes`` local processes; one line if it fails."""
    job_path = Path(job_path)
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps({**job, "threads_per_process": threads_per_process}, indent=1))
    command = torchrun_command(job_path, processes)
    log.info("launching %s", " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process)}
    with open(log_path, "a") as log_file:
        result = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        errors = re.findall(f"{ERROR_MARK}(.*)", Path(log_path).read_text())
        raise MrisrError(errors[-1] if errors else f"training failed (exit code {result.returncode}); see {log_path}")


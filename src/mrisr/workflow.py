"""The bridge between Snakemake and the package: rule scripts (logging, threads, clean errors), where a degradation's
files go, and running the workflow of this checkout from Python (the tests and the quality benchmark)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

REPOSITORY = Path(__file__).resolve().parents[2]


def expose_package(source_dir: str) -> None:
    """Put ``source_dir`` on the PYTHONPATH that rule scripts (and Slurm jobs) inherit."""
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if source_dir not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([source_dir, *entries])


def run_rule(snakemake: Any, main: Callable[[Any], None]) -> None:
    """Run ``main(snakemake)`` with logging to the rule's log file and stderr.

    A :class:`mrisr.io.MrisrError` (bad input, bad config) ends the job with
    one line naming the problem instead of a traceback; outputs are written
    atomically, so nothing half-written is left behind.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        os.makedirs(os.path.dirname(str(snakemake.log[0])) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(str(snakemake.log[0]), mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        handlers=handlers, force=True)
    threads = max(1, int(snakemake.threads))
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    try:
        import torch
    except ImportError:  # rule environments without PyTorch (--sdm conda)
        pass
    else:
        torch.set_num_threads(threads)
    from .io import MrisrError

    if os.environ.get("SLURM_JOB_ID"):
        logging.getLogger("mrisr").info("Slurm job %s on %s (CUDA_VISIBLE_DEVICES=%s)",
                                        os.environ["SLURM_JOB_ID"], os.uname().nodename,
                                        os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    try:
        main(snakemake)
    except MrisrError as error:
        logging.getLogger("mrisr").error("%s", error)
        sys.exit(1)
    except Exception:  # a bug, not bad input: keep the traceback, in the log too
        logging.getLogger("mrisr").exception("unexpected error")
        raise


def run_workflow(workdir: str | Path, *args: str, cores: int = 2, timeout: float | None = None,
                 ) -> subprocess.CompletedProcess:
    """This checkout's workflow with ``workdir`` as its working directory (outputs land there), its output captured."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPOSITORY / "Snakefile"),
               "--directory", str(workdir), "--cores", str(cores), *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPOSITORY)


def degradation_folder(degradation: str, own: str) -> str:
    """The path part of the files a degradation's LR scans lead to: none for the pairs' own degradation ``own``
    (its files keep the paths they had before degradations had names), else ``/<name>``, a folder of its own."""
    return "" if degradation == own else f"/{degradation}"

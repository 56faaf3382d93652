"""Shared fixtures: the real workflow, run once on the tiny config in a scratch directory."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import TINY_CONFIG
from mrisr.workflow import run_workflow


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run this repository's workflow with ``workdir`` as its working directory (outputs land there)."""
    result = run_workflow(workdir, *args, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole workflow on the tiny config, run once per test session."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir, "--configfile", str(TINY_CONFIG))
    return workdir

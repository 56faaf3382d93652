"""Run Snakemake through the Slurm executor on a real (one-node) Slurm cluster.

CI starts the cluster before pytest (`bash tests/slurm/cluster.sh start`) and
stops it afterwards; without a reachable cluster the test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ONE_MODEL_CONFIG, REPO, TINY_CONFIG

TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
USER_PROFILE = REPO / "slurm"
SNAKEMAKE_TIMEOUT_S = 600


def _cluster_answers() -> str | None:
    """None if a Slurm cluster answers with an idle/usable node, else why not."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH (start one with: bash tests/slurm/cluster.sh start)"
    try:
        res = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo timed out: the Slurm controller does not answer"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no error message"])[-1]
        return (
            f"the Slurm cluster does not answer ({last}); "
            "start one with: bash tests/slurm/cluster.sh start"
        )
    states = res.stdout.split()
    if not any(s.rstrip("*~#$@") in {"idle", "mix", "alloc"} for s in states):
        return f"no usable Slurm node (sinfo states: {states})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _cluster_answers()
    if reason:
        pytest.skip(reason)


def _snakemake_env() -> dict[str, str]:
    """Environment for the Snakemake process (sbatch exports it into the jobs).

    Puts this Python's bin dir first on PATH, as an activated venv would, so
    that rules' shell commands find the project's tools inside Slurm jobs.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    # A Slurm job context leaking into the submitter confuses the plugin.
    for key in list(env):
        if key.startswith("SLURM_"):
            del env[key]
    return env


def run_snakemake_on_slurm(
    workdir: Path,
    snakefile: Path,
    configfile: Path | None = None,
    extra_args=(),
    profile: Path = TEST_PROFILE,
    timeout: float = SNAKEMAKE_TIMEOUT_S,
) -> subprocess.CompletedProcess:
    """Run `snakemake --profile <test profile> --cores all` in `workdir`.

    Asserts Snakemake exits 0 (showing its log otherwise) and returns the
    completed process (stdout and stderr merged into `.stdout`).
    """
    cmd = [
        sys.executable, "-m", "snakemake",
        "--profile", str(profile),
        "--cores", "all",
        "--snakefile", str(snakefile),
        "--directory", str(workdir),
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(extra_args)
    start = time.monotonic()
    try:
        res = subprocess.run(
            cmd,
            cwd=workdir,
            env=_snakemake_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        subprocess.run(["squeue", "--states=all"], check=False)
        pytest.fail(f"snakemake on Slurm timed out after {timeout} s:\n{out[-8000:]}")
    elapsed = time.monotonic() - start
    print(f"snakemake on Slurm took {elapsed:.1f} s")
    assert res.returncode == 0, (
        f"snakemake on Slurm failed (rc={res.returncode}):\n{res.stdout[-8000:]}"
    )
    return res


# The test node has little memory; the workflow profile's requests are sized for real data.
SMALL_RESOURCES = [f"{rule}:mem_mb=800" for rule in
                   ("fetch", "preprocess", "pairs", "train", "calibrate", "super_resolve", "evaluate",
                    "evaluate_baselines", "panel", "report")]


@pytest.mark.slurm
def test_tiny_workflow_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    # The tiny workflow with its 3D diffusion model only (the other models add jobs, not coverage).
    run_snakemake_on_slurm(tmp_path, REPO / "Snakefile",
                           extra_args=["--configfile", str(TINY_CONFIG), str(ONE_MODEL_CONFIG),
                                       "--set-resources", *SMALL_RESOURCES])

    assert (tmp_path / "results/report/index.html").stat().st_size > 10_000
    logs = sorted((tmp_path / "logs").rglob("*.log"))
    job_ids = {}
    for log in logs:
        match = re.search(r"Slurm job (\d+) on \S+ \(CUDA_VISIBLE_DEVICES=(\S*)\)", log.read_text())
        assert match, f"{log.relative_to(tmp_path)} did not run inside a Slurm job"
        job_ids[log.relative_to(tmp_path / "logs").as_posix()] = match.groups()
    # fetch x3, write_split, preprocess x3, pairs x3, train, calibrate, super_resolve, evaluate, evaluate_baselines,
    # panel, summarize, report
    assert len(job_ids) == 18
    assert len({job for job, _ in job_ids.values()}) == len(job_ids), "rules shared a Slurm job"
    assert job_ids["train/diffusion3d.log"][1], "the training job asked for a GPU but got no CUDA_VISIBLE_DEVICES"
    assert job_ids["super_resolve/diffusion3d/robex.log"][1]
    assert not job_ids["report.log"][1], "a CPU rule was given a GPU"
    # One Slurm task ran torchrun, which ran two training processes (the job's two CPUs; the fake GPU has no CUDA).
    train_log = (tmp_path / "logs/train/diffusion3d.log").read_text()
    assert re.search(r"processes: rank 0: pid \d+ on \S+, cpu; rank 1: pid \d+ on \S+, cpu", train_log)
    assert "2 process(es) on cpu, gloo" in train_log


def test_user_profile_is_valid_yaml():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((USER_PROFILE / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    test_cfg = yaml.safe_load((TEST_PROFILE / "config.yaml").read_text())
    # The test profile must differ from the users' only in cluster specifics.
    for key in ("executor", "retries", "rerun-incomplete"):
        assert test_cfg[key] == cfg[key], key

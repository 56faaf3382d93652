"""Run Snakemake through the Slurm executor on a real (one-node) Slurm cluster.

CI starts the cluster before pytest (`bash tests/slurm/cluster.sh start`) and
stops it afterwards; without a reachable cluster the test is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


SMALL_SNAKEFILE = textwrap.dedent(
    r"""
    rule all:
        input: "aggregate.txt"

    rule cpu:
        output: "cpu.txt"
        threads: 1
        shell:
            "echo SLURM_JOB_ID=$SLURM_JOB_ID > {output}; "
            "echo PYTHON=$(command -v python) >> {output}"

    rule gpu:
        output: "gpu.txt"
        resources: gpu=1
        shell:
            "echo SLURM_JOB_ID=$SLURM_JOB_ID > {output}; "
            "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES >> {output}"

    rule aggregate:
        input: "cpu.txt", "gpu.txt"
        output: "aggregate.txt"
        shell:
            "cat {input} > {output}; "
            "echo SLURM_JOB_ID=$SLURM_JOB_ID >> {output}"
    """
)


def _record(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value.strip())
    return out


@pytest.mark.slurm
def test_small_workflow_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SMALL_SNAKEFILE)

    run_snakemake_on_slurm(tmp_path, snakefile)

    cpu = _record(tmp_path / "cpu.txt")
    gpu = _record(tmp_path / "gpu.txt")
    agg = _record(tmp_path / "aggregate.txt")
    job_ids = [cpu["SLURM_JOB_ID"][0], gpu["SLURM_JOB_ID"][0], agg["SLURM_JOB_ID"][-1]]
    assert all(job_ids), f"a rule did not run inside a Slurm job: {job_ids}"
    assert len(set(job_ids)) == 3, f"rules did not run as separate Slurm jobs: {job_ids}"
    assert gpu["CUDA_VISIBLE_DEVICES"][0], "the gpu=1 job got no CUDA_VISIBLE_DEVICES"
    # The submitting environment (venv on PATH) reaches the jobs.
    assert cpu["PYTHON"][0].startswith(str(Path(sys.executable).parent)), cpu["PYTHON"]


def test_user_profile_is_valid_yaml():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((USER_PROFILE / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    test_cfg = yaml.safe_load((TEST_PROFILE / "config.yaml").read_text())
    # The test profile must differ from the users' only in cluster specifics.
    for key in ("executor", "retries", "rerun-incomplete"):
        assert test_cfg[key] == cfg[key], key

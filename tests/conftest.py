"""Shared fixtures: the real workflow, run once on the tiny config in a scratch directory."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import TINY_CONFIG
from mrisr.workflow import run_workflow

# `make test` runs the suite in pytest-xdist workers (three: Makefile), one group of tests per worker at a time:
# a module (its module fixtures are built once), except that the modules using the session's tiny workflow run
# form one group (the run is made once). The longest groups go first, so that no worker is left with one at the
# end: the tiny run's (about 7 minutes on 2 cores), ROBEX on real heads (6), Slurm (4), the benchmark (2).
TESTS = Path(__file__).parent
TINY_RUN_MODULES = {path.stem for path in TESTS.glob("test_*.py") if "tiny_run" in path.read_text()}
LONGEST_FIRST = ("tiny_run", "test_preprocess", "test_slurm", "test_benchmark", "test_qc_failures", "test_train",
                 "test_scan", "test_hcp_workflow")


def group_of(module: str) -> str:
    """The xdist group of a test module (its file's stem)."""
    return "tiny_run" if module in TINY_RUN_MODULES else module


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


def pytest_xdist_make_scheduler(config, log):
    """Tests scheduled by :func:`group_of` (pytest-xdist's own ``loadgroup`` needs markers that pytest 9 no
    longer carries into the test IDs)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(Path(nodeid.split("::", 1)[0]).stem)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(items) -> None:
    """The longest groups first (a stable sort: collection order within a group)."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.path.stem), len(rank)))

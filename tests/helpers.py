"""Helpers shared by the tests and the benchmarks: the real config, scans stored in other orientations, and
preprocessing a scan laid out as the workflow lays it out."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml
from nibabel import orientations

from mrisr.config import merge, replace_whole_sections, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY_CONFIG = REPO / "tests" / "data" / "tiny.yaml"
ONE_MODEL_CONFIG = REPO / "tests" / "data" / "one_model.yaml"  # layered over TINY_CONFIG


def load_config(*overrides: dict | Path) -> dict:
    """config/config.yaml with each override (a dict or a YAML file) merged over it as Snakemake does, validated."""
    config = yaml.safe_load(CONFIG.read_text())
    for override in overrides:
        if isinstance(override, Path):
            override = yaml.safe_load(override.read_text())
        config = merge(config, override)
        replace_whole_sections(config, override)
    validate_config(config, SCHEMA)
    return config


def tiny_config(*overrides: dict) -> dict:
    """The tiny test config (tests/data/tiny.yaml over config/config.yaml) with ``overrides`` merged in."""
    return load_config(TINY_CONFIG, *overrides)


def stored_as(image: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same physical image with its voxels stored in the order ``codes`` (e.g. "LIA")."""
    change = orientations.ornt_transform(orientations.io_orientation(image.affine),
                                         orientations.axcodes2ornt(tuple(codes)))
    return image.as_reoriented(change)


def rotation(x_degrees: float, y_degrees: float) -> np.ndarray:
    """A 4x4 world rotation about the x then the y axis."""
    a, b = np.radians([x_degrees, y_degrees])
    about_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    about_y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    matrix = np.eye(4)
    matrix[:3, :3] = about_y @ about_x
    return matrix


# What the preprocess rule writes for a subject, in the order preprocess_to_files takes them.
PREPROCESS_OUTPUTS = ("T1w_brain.nii.gz", "brain_mask.nii.gz", "xfm_to_template.mat", "timing.csv", "qc.png",
                      "qc.csv")


def preprocess_in(folder: str, subject: str, settings: dict) -> str:
    """Preprocess ``folder/raw/<subject>.nii.gz`` laid out as the workflow does; '' or the one-line error."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # as mrisr.workflow sets for a one-thread job
    from mrisr.io import MrisrError
    from mrisr.preprocess.pipeline import preprocess_to_files

    out = Path(folder) / "results" / "preproc" / subject
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(folder) / "logs" / "preprocess"
    try:
        preprocess_to_files(str(Path(folder) / "raw" / f"{subject}.nii.gz"),
                            *(str(out / name) for name in PREPROCESS_OUTPUTS),
                            log_qc=str(logs / f"{subject}.qc.png"), log_qc_csv=str(logs / f"{subject}.qc.csv"),
                            subject=subject, settings=settings, seed=load_config()["seed"])
    except MrisrError as error:
        return str(error)
    return ""

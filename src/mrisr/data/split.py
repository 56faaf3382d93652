"""Which subjects train, validate and test: explicit lists or a seeded split, checked, and written out.

Test subjects never reach training; everything that decides or records that lives here.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import MrisrError, atomic_path

log = logging.getLogger(__name__)

ROLES = ("train", "val", "test")


def resolve_split(split: dict, subjects: list[str], seed: int, train_required: bool,
                  test_required: bool) -> dict[str, list[str]]:
    """The ``split:`` config section as role -> subjects: explicit lists, or a seeded split of ``subjects``.

    ``train_required`` is false when every model is pretrained; ``test_required`` is false when the run
    applies its models to the user's own LR scans (``apply:``) and may score none.
    """
    if "random" in split:
        return seeded_split(subjects, split["random"]["val"], split["random"]["test"], seed)
    resolved = {role: list(split.get(role, [])) for role in ROLES}
    check_split(resolved, subjects, train_required, test_required)
    return resolved


def without_excluded(split: dict, subjects: list[str], excluded: list[str]) -> tuple[dict, list[str]]:
    """The ``split:`` config section and the subject list with the ``preprocess.exclude`` subjects taken out.

    An explicit split loses them from its lists; a seeded split is drawn from
    the subjects that remain.
    """
    unknown = [subject for subject in excluded if subject not in subjects]
    if unknown:
        raise MrisrError(f"preprocess.exclude: unknown subject(s) {', '.join(unknown)}; "
                         f"available: {', '.join(subjects)}")
    dropped = set(excluded)
    kept = {role: [s for s in names if s not in dropped] if isinstance(names, list) else names
            for role, names in split.items()}
    return kept, [subject for subject in subjects if subject not in dropped]


def check_split(split: dict[str, list[str]], subjects: list[str], train_required: bool = True,
                test_required: bool = True) -> None:
    """Roles must not share subjects, train and test (when needed) must not be empty, and every subject must exist."""
    for first, second in (("train", "test"), ("val", "test"), ("train", "val")):
        shared = sorted(set(split[first]) & set(split[second]))
        if shared:
            raise MrisrError(f"config split: {', '.join(shared)} in both split.{first} and split.{second}")
    for role, required in (("train", train_required), ("test", test_required)):
        if required and not split[role]:
            raise MrisrError(f"config split.{role}: no subjects; the workflow needs at least one")
    known = set(subjects)
    for role, names in split.items():
        missing = [name for name in names if name not in known]
        if missing:
            raise MrisrError(f"config split.{role}: unknown subject(s) {', '.join(missing)}; "
                             f"available: {', '.join(subjects)}")


def seeded_split(subjects: list[str], val: int | float, test: int | float, seed: int) -> dict[str, list[str]]:
    """Split ``subjects`` into train/val/test, the same way every time for the same ``seed``.

    ``val`` and ``test`` are counts (int) or fractions of all subjects (float,
    rounded to the nearest count, at least 1 when positive). The sorted subjects
    are shuffled with ``numpy.random.default_rng(seed)``; test takes the first,
    val the next, train the rest. Sorting first makes the split independent of
    the order the subjects were listed in. Each list in the result is sorted.
    """
    if len(set(subjects)) != len(subjects):
        repeated = sorted({subject for subject in subjects if subjects.count(subject) > 1})
        raise MrisrError(f"split: subject(s) listed twice: {', '.join(repeated)}")
    total = len(subjects)
    n_test = _split_count(test, total, "test")
    n_val = _split_count(val, total, "val")
    if n_test < 1:
        raise MrisrError("split: test must hold at least 1 subject")
    if n_test + n_val + 1 > total:
        raise MrisrError(f"split: {total} subject(s) are too few for {n_test} test + {n_val} val "
                         "+ at least 1 train; add subjects or lower split.test/split.val")
    order = np.random.default_rng(seed).permutation(sorted(subjects)).tolist()
    return {
        "train": sorted(order[n_test + n_val:]),
        "val": sorted(order[n_test:n_test + n_val]),
        "test": sorted(order[:n_test]),
    }


def _split_count(value: int | float, total: int, name: str) -> int:
    """Number of subjects for a count or a fraction of ``total``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise MrisrError(f"split.{name}: {value!r} is neither a count nor a fraction")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise MrisrError(f"split.{name}: {value} subjects; give a count >= 0")
        return int(value)
    if not 0 <= value < 1:
        raise MrisrError(f"split.{name}: fraction {value} must be at least 0 and below 1")
    count = math.floor(value * total + 0.5)
    return max(count, 1) if value > 0 else 0


def write_split(split: dict[str, list[str]], sidecar_paths: list[str], out_path: str) -> None:
    """A table of every subject's role (train/val/test) and origin, for the report and for the record.

    ``kind`` says whether the subject is a real person's scan, a population
    average (a template), or derived from one of those by a synthetic deformation.
    """
    origins = {Path(path).parent.name: json.loads(Path(path).read_text()) for path in sidecar_paths}
    rows = []
    for role, subjects in split.items():
        for subject in subjects:
            sidecar = origins.get(subject, {})
            rows.append({"subject": subject, "role": role, "source": sidecar.get("source", ""),
                         "kind": sidecar.get("kind", ""),
                         "real_volume": sidecar.get("real_volume", subject),
                         "derived_from": sidecar.get("derived_from", ""),
                         "description": sidecar.get("description", sidecar.get("file", ""))})
    with atomic_path(out_path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False)
    log.info("split: %s", {role: len(subjects) for role, subjects in split.items()})

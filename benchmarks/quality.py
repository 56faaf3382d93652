"""Quality benchmark: model kinds (or training variants) side by side with the baselines, on brains never trained on.

Every fold is a run of the workflow itself in one work folder: the suite's models (benchmarks/suites.yaml)
replace the config's, and the fold's split replaces its split, so preprocessing, pairs, training,
sampling and scoring are exactly the workflow's, and fold after fold only what changed reruns. Folds:
the config's own split, or leave-one-real-brain-out (`--folds loro`: each real person of the embedded
data, with the subjects derived from it, is the test set once, and trains in the other folds).
Prints one table and writes `<workdir>/quality.json`; each fold's HTML report is kept beside it.

`--suite thick` (benchmarks/thick.py) trains its models by the workflow with the suite's `overlay` (thick-slice
pairs), then scores each test subject with the thick axis along each of its `axes` beside cubic, back-projection
and ECLARE (from `make eclare-env`'s environment, with the budget `eclare` states), into `<workdir>/quality.json`,
and links each subject and axis's figure of slices across the thick axis in `<workdir>/thick_figures.md`.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from mrisr.config import merge, replace_whole_sections
from mrisr.data.embedded import DERIVED, EMBEDDED_VOLUMES
from mrisr.evaluation.scoring import method_summary
from mrisr.io import write_json
from mrisr.provenance import provenance
from mrisr.workflow import run_workflow

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "benchmarks" / "suites.yaml"
TINY = REPO / "tests" / "data" / "tiny.yaml"


def read_yaml(path: Path | None) -> dict:
    return (yaml.safe_load(Path(path).read_text()) or {}) if path else {}


def folds(config: dict, kind: str) -> dict[str, dict[str, list[str]]]:
    """Fold name -> split. ``config``: the config's own split; ``loro``: each real person held out once."""
    split = config["split"]
    if kind == "config":
        return {"config": {role: list(split.get(role, [])) for role in ("train", "val", "test")}}
    if config["data"]["source"] != "embedded":
        sys.exit("--folds loro needs data.source: embedded (it holds out each real person of the embedded data)")
    subjects = [s for role in ("train", "val", "test") for s in split.get(role, [])]
    base = lambda subject: DERIVED.match(subject)["base"] if DERIVED.match(subject) else subject
    people = sorted({base(s) for s in subjects if EMBEDDED_VOLUMES[base(s)].real_person})
    if len(people) < 2:
        sys.exit(f"--folds loro needs at least two real people in the split; it has {people}")
    result = {}
    for person in people:
        test = [s for s in subjects if base(s) == person]
        val = [s for s in split.get("val", []) if s not in test]
        result[f"without_{person}"] = {"train": [s for s in subjects if s not in test + val], "val": val, "test": test}
    return result


def snakemake(workdir: Path, configs: list[Path], cores: int, targets: list[str] = ()) -> None:
    """The workflow (or its ``targets``), with ``configs`` merged over config/config.yaml, in ``workdir``."""
    result = run_workflow(workdir, *targets, "--configfile", *map(str, configs), cores=cores)  # targets first
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")


def run_fold(name: str, split: dict, suite: dict, base: dict, args: argparse.Namespace) -> pd.DataFrame:
    """One fold: the suite's models trained on ``split``, then its sampler variants; the scores of both."""
    overlay = fold_overlay(split, suite, base, args)
    models = overlay["models"]
    configs = [*args.configs, args.workdir / f"{name}.yaml"]
    configs[-1].write_text(yaml.safe_dump(overlay, sort_keys=False))
    print(f"fold {name}: training {', '.join(suite['models'])} on {', '.join(split['train'])}; "
          f"testing on {', '.join(split['test'])}", file=sys.stderr, flush=True)
    snakemake(args.workdir, configs, args.cores)
    if suite["sampler_variants"]:
        results = args.workdir / "results"
        models.update({variant: {"pretrained": str(results / "models" / spec["model"] / "model.pt"),
                                 "sampler": spec["sampler"]} for variant, spec in suite["sampler_variants"].items()})
        configs[-1].write_text(yaml.safe_dump(overlay, sort_keys=False))
        snakemake(args.workdir, configs, args.cores)
    shutil.copy(args.workdir / "results" / "report" / "index.html", args.workdir / f"report_{name}.html")
    table = pd.read_csv(args.workdir / "results" / "metrics" / "summary.csv", dtype={"factor": str})
    return table.assign(fold=name)


def fold_overlay(split: dict, suite: dict, base: dict, args: argparse.Namespace) -> dict:
    """The config a fold's run layers over the others: its split, the suite's models (the config's own leave) and
    settings (``overlay``), and ``--steps``."""
    models = {model: None for model in base["models"]}  # the config's own models leave the stage
    models.update(suite["models"])
    overlay = merge(suite.get("overlay", {}), {"split": split, "models": models})
    if args.steps:
        share = base["train"]["warm_start_steps"] / base["train"]["steps"]
        overlay["train"] = {**overlay.get("train", {}), "steps": args.steps,
                            "warm_start_steps": round(args.steps * share)}
    return overlay


def thick_fold_targets(split: dict, suite: dict) -> list[str]:
    """What a fold of the thick-slice suite needs of the workflow (paths in the work folder): each model file, and
    each test subject's preprocessed brain and mask, which ``thick_rows`` degrades and scores (no workflow target
    asks for them: the suite makes its own LR)."""
    return ([f"results/models/{model}/model.pt" for model in suite["models"]]
            + [f"results/preproc/{subject}/{name}" for subject in split["test"]
               for name in ("T1w_brain.nii.gz", "brain_mask.nii.gz")])


def run_thick_fold(name: str, split: dict, suite: dict, base: dict, args: argparse.Namespace) -> pd.DataFrame:
    """One fold of the thick-slice suite: its models trained by the workflow, then every test subject along each
    axis (benchmarks/thick.py)."""
    from thick import EclareBudget, ECLARE_VENV, thick_rows

    overlay = fold_overlay(split, suite, base, args)
    config = merge(base, overlay)
    configs = [*args.configs, args.workdir / f"{name}.yaml"]
    configs[-1].write_text(yaml.safe_dump(overlay, sort_keys=False))
    trained = {model: args.workdir / "results" / "models" / model / "model.pt" for model in suite["models"]}
    print(f"fold {name}: training {', '.join(trained)} on {', '.join(split['train'])}; testing on "
          f"{', '.join(split['test'])} along {', '.join(args.axes)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    snakemake(args.workdir, configs, args.cores, thick_fold_targets(split, suite))
    print(f"fold {name}: models ready in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    budget = EclareBudget(args.eclare_patches or suite["eclare"]["n_patches"],
                          suite["eclare"]["known_thickness"] and not args.eclare_espreso)
    if args.no_eclare or not (ECLARE_VENV / "bin" / "run-eclare").is_file():
        print(f"ECLARE left out: {'--no-eclare' if args.no_eclare else f'no {ECLARE_VENV} (make eclare-env)'}",
              file=sys.stderr, flush=True)
        budget = None
    degradation = config["degradations"][config["pairs"]["degradation"]]
    factor = config["pairs"]["factor"]
    factor = max(factor) if isinstance(factor, list) else factor
    rows = [row for subject in split["test"]
            for row in thick_rows(subject, args.workdir / "results" / "preproc", args.axes, factor, degradation,
                                  trained, config["evaluate"], budget, args.workdir, config["seed"], args.cores)]
    return pd.DataFrame(rows).assign(fold=name)


def training_seconds(workdir: Path, models: dict) -> dict[str, float]:
    """Wall seconds each trained model's last training took (from its training log)."""
    seconds = {}
    for model in models:
        log = workdir / "results" / "models" / model / "train_log.csv"
        if log.is_file():
            seconds[model] = float(pd.read_csv(log)["seconds"].iloc[-1])
    return seconds


def print_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per factor and method: PSNR in the brain and its paired differences to cubic and back-projection, per fold."""
    parts = []
    for fold, fold_rows in rows.groupby("fold", sort=False):
        summary = method_summary(fold_rows)
        parts.append(summary[["factor", "method", "psnr_brain_mean", "psnr_brain_vs_cubic",
                              "psnr_brain_vs_back_projection", "ssim_brain_vs_cubic", "lr_psnr_mean",
                              "uncertainty_error_corr_mean"]].assign(fold=fold))
    table = pd.concat(parts, ignore_index=True)
    wide = table.pivot_table(index=["factor", "method"], columns="fold", sort=False,
                             values=["psnr_brain_vs_cubic", "psnr_brain_vs_back_projection"])
    print(wide.round(2).to_string())
    print("paired differences in brain PSNR (dB), mean over each fold's test subjects")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="models", help="a suite of benchmarks/suites.yaml (default: models)")
    parser.add_argument("--folds", choices=["config", "loro"], default="loro",
                        help="the config's split, or leave-one-real-brain-out (default)")
    parser.add_argument("--config", type=Path, help="yaml merged over config/config.yaml")
    parser.add_argument("--steps", type=int,
                        help="training steps of every model (default: the suite's overlay's, else train.steps)")
    parser.add_argument("--workdir", type=Path, default=REPO / "results" / "benchmark")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--smoke", action="store_true", help="tests/data/tiny.yaml sizes, the config's split")
    parser.add_argument("--axes", default=None,
                        help="thick suite: thick axes to score, e.g. z,x (default: the suite's)")
    parser.add_argument("--eclare-patches", type=int,
                        help="thick suite: ECLARE's training patches (default: the suite's)")
    parser.add_argument("--eclare-espreso", action="store_true",
                        help="thick suite: ECLARE estimates the slice profile (ESPRESO) instead of being told it")
    parser.add_argument("--no-eclare", action="store_true", help="thick suite: leave ECLARE out")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.configs = [path for path in (TINY if args.smoke else None, args.config) if path]
    base = read_yaml(REPO / "config" / "config.yaml")
    for path in args.configs:
        override = read_yaml(path)
        base = merge(base, override)
        replace_whole_sections(base, override)
    suite = read_yaml(SUITES)[args.suite]
    if args.smoke and not args.steps:  # tiny.yaml's budget, also over a suite that sets its own
        args.steps = base["train"]["steps"]
    started = time.perf_counter()
    splits = folds(base, "config" if args.smoke else args.folds)
    figures = []
    if "axes" in suite:
        from thick import figure_links, thick_table

        args.axes = args.axes.split(",") if args.axes else suite["axes"]
        rows = pd.concat([run_thick_fold(name, split, suite, base, args) for name, split in splits.items()],
                         ignore_index=True)
        table = thick_table(rows)
        print(table.round({"psnr_brain": 2, "ssim_brain": 4, "dice_mean": 4, "vs_cubic": 2, "vs_eclare": 2,
                           "seconds": 0}).to_string(index=False))
        figures = figure_links(rows, args.workdir)
        (args.workdir / "thick_figures.md").write_text("\n\n".join(figures) + "\n")
        print(f"slices across the thick axis ({args.workdir / 'thick_figures.md'}):", *figures, sep="\n")
    else:
        rows = pd.concat([run_fold(name, split, suite, base, args) for name, split in splits.items()],
                         ignore_index=True)
        table = print_table(rows)
    document = {
        "suite": args.suite, "suite_settings": suite, "folds": splits,
        "steps": args.steps or merge(base, suite.get("overlay", {}))["train"]["steps"],
        "per_subject": rows.to_dict("records"), "summary": table.to_dict("records"), "figures": figures,
        "training_seconds_last_fold": training_seconds(args.workdir, suite["models"]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "provenance": provenance(REPO), "total_seconds": time.perf_counter() - started,
    }
    write_json(document, args.workdir / "quality.json")
    print(f"wrote {args.workdir / 'quality.json'} ({document['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()

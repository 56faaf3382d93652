# The apply stage: each of the user's own LR scans (apply.path) super-resolved by each model of apply.models
# (with apply.pick_model, by the one whose voxel size fits it: APPLY_JOBS), written in the BIDS-derivatives layout
# (one dataset per model), and one page that shows them all. A scan that fails stops its own job in one line (run
# with --keep-going, then list it in apply.exclude).

APPLY_PATTERN = f"{RESULTS}/apply/{{model}}/sub-{{scan}}/anat/sub-{{scan}}_res-{{res}}_{{suffix}}"


wildcard_constraints:
    scan="[A-Za-z0-9]+",
    res="[A-Za-z0-9]+",


rule apply:
    input:
        scan=lambda wildcards: APPLY_FILES[wildcards.scan],
        model=lambda wildcards: model_file(wildcards.model),
    output:
        **{name: APPLY_PATTERN.replace("{suffix}", suffix)
           for name, suffix in {**APPLY_OUTPUTS, **APPLY_CALIBRATED_OUTPUTS}.items()},
    log:
        "logs/apply/{model}/{scan}_res-{res}.log",
    params:
        # The scan's own settings, not the list of scans or models: adding a scan reruns nobody else.
        settings=lambda wildcards: {key: value for key, value in settings("apply").items()
                                    if key in ("skull_strip", "bias_correction", "brain_only")},
        sampler=lambda wildcards: canonical(MODELS[wildcards.model]["sampler"]),
        stripped_max_ml=config["preprocess"]["stripped_max_ml"],
        seed=config["seed"],
    wildcard_constraints:
        model="|".join(CALIBRATED) or "(?!)",
    threads: 1
    resources:
        gpu=GPUS,
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/apply.py"


# A model without calibration (a pretrained file without one): the estimate and the raw sd only.
use rule apply as apply_raw with:
    output:
        **{name: APPLY_PATTERN.replace("{suffix}", suffix) for name, suffix in APPLY_OUTPUTS.items()},
    wildcard_constraints:
        model="|".join(name for name in MODELS if name not in CALIBRATED) or "(?!)",


rule apply_report:
    input:
        sidecars=[applied(model, scan, APPLY_OUTPUTS["sidecar"]) for model, scan in APPLY_JOBS],
        panels=[applied(model, scan, APPLY_OUTPUTS["panel"]) for model, scan in APPLY_JOBS],
    output:
        html=report(
            f"{RESULTS}/apply/report.html",
            caption="../report/apply.rst",
            category="Applied scans",
        ),
        descriptions=[f"{RESULTS}/apply/{model}/dataset_description.json" for model in APPLY_MODELS],
    log:
        "logs/apply_report.log",
    params:
        jobs=[[model, scan, why] for (model, scan), why in APPLY_JOBS.items()],
        config=canonical(config["apply"]),
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/apply_report.py"

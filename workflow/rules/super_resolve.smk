# Stage 5: each model on each held-out subject, from the LR of each evaluated degradation: patch-wise DDIM
# sampling, the estimate, the samples' sd and the spread of the mirrored views; with a calibrated model also its
# error scale and the bounds of the interval at sampler.interval.
# A cascade runs its stages in turn; a pretrained model is used from its file.

SR = f"{RESULTS}/sr/{{model}}/{{subject}}{{degradation}}"


rule super_resolve:
    input:
        lr=lambda wildcards: lr_file(wildcards.subject, factor_of(wildcards.model), part=wildcards.degradation),
        grid=lambda wildcards: lr_file(wildcards.subject, factor_of(wildcards.model), "pair.json",
                                       part=wildcards.degradation),
        models=lambda wildcards: [model_file(stage) for stage in stages(wildcards.model)],
    output:
        sr=f"{SR}/sr.nii.gz",
        sr_std=f"{SR}/sr_std.nii.gz",
        sr_view_sd=f"{SR}/sr_view_sd.nii.gz",
        sr_scale=f"{SR}/sr_scale.nii.gz",
        sr_lower=f"{SR}/sr_lower.nii.gz",
        sr_upper=f"{SR}/sr_upper.nii.gz",
        sr_scale_json=f"{SR}/sr_scale.json",
    log:
        "logs/super_resolve/{model}/{subject}{degradation}.log",
    params:
        samplers=lambda wildcards: [canonical(MODELS[stage]["sampler"]) for stage in stages(wildcards.model)],
        interval=lambda wildcards: MODELS[wildcards.model]["sampler"]["interval"] if calibrated(wildcards.model)
        else 0.0,
        seed=config["seed"],
    wildcard_constraints:
        model="|".join(CALIBRATED) or "(?!)",
    threads: 1
    resources:
        gpu=GPUS,
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/super_resolve.py"


# A model without calibration (a cascade, a pretrained file without one): the estimate and the raw spreads only.
use rule super_resolve as super_resolve_raw with:
    output:
        sr=f"{SR}/sr.nii.gz",
        sr_std=f"{SR}/sr_std.nii.gz",
        sr_view_sd=f"{SR}/sr_view_sd.nii.gz",
    wildcard_constraints:
        model="|".join(name for name in MODELS if name not in CALIBRATED) or "(?!)",

# Stage 6: every model and baseline scored on the same voxels of each test subject, side by side, from the LR
# of each degradation of evaluate.degradations (the `{degradation}` path part: empty for pairs.degradation).


rule evaluate:
    input:
        hr=hr_file("{subject}"),
        lr=lambda wildcards: lr_file(wildcards.subject, factor_of(wildcards.model), part=wildcards.degradation),
        mask=mask_file("{subject}"),
        sr=f"{RESULTS}/sr/{{model}}/{{subject}}{{degradation}}/sr.nii.gz",
        sr_std=f"{RESULTS}/sr/{{model}}/{{subject}}{{degradation}}/sr_std.nii.gz",
        sr_view_sd=f"{RESULTS}/sr/{{model}}/{{subject}}{{degradation}}/sr_view_sd.nii.gz",
        # A calibrated model's error scale, and the sidecar that records its calibration.
        calibrated=lambda wildcards: [f"{RESULTS}/sr/{wildcards.model}/{wildcards.subject}{wildcards.degradation}/"
                                      f"{name}" for name in ("sr_scale.nii.gz", "sr_scale.json")]
        if calibrated(wildcards.model) else [],
    output:
        metrics=f"{RESULTS}/metrics/{{subject}}{{degradation}}/model_{{model}}.csv",
        calibration=f"{RESULTS}/metrics/{{subject}}{{degradation}}/model_{{model}}_calibration.csv",
        uncertainty=f"{RESULTS}/metrics/{{subject}}{{degradation}}/model_{{model}}_uncertainty.csv",
        reliability=f"{RESULTS}/metrics/{{subject}}{{degradation}}/model_{{model}}_reliability.csv",
    log:
        "logs/evaluate/{model}/{subject}{degradation}.log",
    params:
        kind=lambda wildcards: MODELS[wildcards.model]["kind"],
        factor=lambda wildcards: MODELS[wildcards.model]["factor"],
        name=lambda wildcards: degradation_named(wildcards.degradation),
        degradation=degradation_settings,  # the one that made the LR: LR-consistency is measured through it
        tissue_classes=config["evaluate"]["tissue_classes"],
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/evaluate.py"


rule evaluate_baselines:
    input:
        hr=hr_file("{subject}"),
        lr=lr_file("{subject}", "{factor}", part="{degradation}"),
        mask=mask_file("{subject}"),
    output:
        metrics=f"{RESULTS}/metrics/{{subject}}{{degradation}}/baselines_x{{factor}}.csv",
    log:
        "logs/evaluate/baselines/{subject}_x{factor}{degradation}.log",
    params:
        factor=lambda wildcards: FACTORS[wildcards.factor],
        settings=evaluate_settings(),
        name=lambda wildcards: degradation_named(wildcards.degradation),
        degradation=degradation_settings,
        assumed=degradation(),  # back-projection assumes the models' operator, whichever made the LR
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/evaluate_baselines.py"


rule panel:
    input:
        hr=hr_file("{subject}"),
        lr=lr_file("{subject}", "{factor}"),
        mask=mask_file("{subject}"),
        sr=lambda wildcards: estimates(wildcards.subject, wildcards.factor, "sr.nii.gz"),
        sr_std=lambda wildcards: estimates(wildcards.subject, wildcards.factor, "sr_std.nii.gz"),
    output:
        panel=report(
            f"{RESULTS}/figures/{{subject}}_x{{factor}}_panel.png",
            caption="../report/panel.rst",
            category="Super-resolution",
            subcategory="{subject}",
        ),
    log:
        "logs/panel/{subject}_x{factor}.log",
    params:
        models=lambda wildcards: evaluated_at(wildcards.factor),
        factor=lambda wildcards: FACTORS[wildcards.factor],
        iterations=config["evaluate"]["back_projection_iterations"],
        degradation=degradation(),
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/panel.py"


rule summarize:
    input:
        models=[path for model in EVALUATED for path in metric_files(f"model_{model}.csv")],
        baselines=[path for factor in EVALUATED_FACTORS for path in metric_files(f"baselines_x{factor}.csv")],
    output:
        summary=report(
            f"{RESULTS}/metrics/summary.csv",
            caption="../report/summary.rst",
            category="Metrics",
        ),
    log:
        "logs/summarize.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/summarize.py"

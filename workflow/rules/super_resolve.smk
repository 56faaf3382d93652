# Stage 5: each model on each held-out subject, from the LR of each evaluated degradation: patch-wise DDIM
# sampling, the estimate and the samples' sd.
# A cascade runs its stages in turn; a pretrained model is used from its file.


rule super_resolve:
    input:
        lr=lambda wildcards: lr_file(wildcards.subject, factor_of(wildcards.model), part=wildcards.degradation),
        grid=lambda wildcards: lr_file(wildcards.subject, factor_of(wildcards.model), "pair.json",
                                       part=wildcards.degradation),
        models=lambda wildcards: [model_file(stage) for stage in stages(wildcards.model)],
    output:
        sr=f"{RESULTS}/sr/{{model}}/{{subject}}{{degradation}}/sr.nii.gz",
        sr_std=f"{RESULTS}/sr/{{model}}/{{subject}}{{degradation}}/sr_std.nii.gz",
    log:
        "logs/super_resolve/{model}/{subject}{degradation}.log",
    params:
        samplers=lambda wildcards: [canonical(MODELS[stage]["sampler"]) for stage in stages(wildcards.model)],
        seed=config["seed"],
    threads: 1
    resources:
        gpu=GPUS,
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/super_resolve.py"

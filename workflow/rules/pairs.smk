# Stage 3: LR scans on their own coarser grid, one per factor a model starts from, made by pairs.degradation
# (and, for test subjects, by each other degradation of evaluate.degradations, under pairs/<subject>/x<f>/<name>/).


rule pairs:
    input:
        brain=hr_file("{subject}"),
    output:
        lr=lr_file("{subject}", "{factor}", part="{degradation}"),
        grid=lr_file("{subject}", "{factor}", "pair.json", part="{degradation}"),
    log:
        "logs/pairs/{subject}_x{factor}{degradation}.log",
    params:
        factor=lambda wildcards: FACTORS[wildcards.factor],
        name=lambda wildcards: degradation_named(wildcards.degradation),
        degradation=degradation_settings,
        seed=config["seed"],
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/pairs.py"

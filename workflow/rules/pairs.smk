# Stage 3: spline-downsampled LR scans on their own coarser grid, one per factor a model starts from.


rule pairs:
    input:
        brain=hr_file("{subject}"),
    output:
        lr=lr_file("{subject}", "{factor}"),
        grid=lr_file("{subject}", "{factor}", "pair.json"),
    log:
        "logs/pairs/{subject}_x{factor}.log",
    params:
        factor=lambda wildcards: FACTORS[wildcards.factor],
        degradation=degradation(),
        seed=config["seed"],
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/pairs.py"

# Stage 4: each trainable model in `models:`, trained once on all training pairs (a GPU job), data-parallel
# over the job's GPUs or CPU cores through torchrun.


rule train:
    input:
        unpack(lambda wildcards: training_files(wildcards.model)),
    output:
        model=f"{RESULTS}/models/{{model}}/model.pt",
        log_csv=f"{RESULTS}/models/{{model}}/train_log.csv",
        curves=report(
            f"{RESULTS}/models/{{model}}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{model}",
        ),
    log:
        "logs/train/{model}.log",
    params:
        # The script builds the model's spec from the config (mrisr.model.spec); these are what decide a retrain.
        # The sampler settings are not: the model file records them as its sampler defaults, and changing
        # them re-samples without retraining.
        model=lambda wildcards: canonical({k: v for k, v in MODELS[wildcards.model].items() if k != "sampler"}),
        degradation=degradation(),  # the blurred training copies are degraded the same way
        train_subjects=TRAIN,
        val_subjects=VAL,
        seed=config["seed"],
        folder=lambda wildcards: f"{RESULTS}/models/{wildcards.model}",
    wildcard_constraints:
        model="|".join(TRAINED) or "(?!)",
    threads: 1
    resources:
        gpu=GPUS,
        tasks_per_gpu=0,  # one Slurm task (srun -n1) runs torchrun, which starts one process per GPU
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/train.py"


rule validation_figure:
    input:
        unpack(lambda wildcards: validation_files(wildcards.model)),
        model=f"{RESULTS}/models/{{model}}/model.pt",
    output:
        validation=report(
            f"{RESULTS}/models/{{model}}/validation.png",
            caption="../report/validation.rst",
            category="Training",
            subcategory="{model}",
        ),
    log:
        "logs/validation_figure/{model}.log",
    params:
        sampler=lambda wildcards: canonical(MODELS[wildcards.model]["sampler"]),
        seed=config["seed"],
    wildcard_constraints:
        model="|".join(TRAINED) or "(?!)",
    threads: 1
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/validation_figure.py"

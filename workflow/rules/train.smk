# Stage 4: each trainable model in `models:`, trained once on all training pairs (a GPU job), data-parallel
# over the job's GPUs or CPU cores through torchrun; then calibrated on the validation subjects, which writes the
# model file a user takes to `mrisr super-resolve`.


rule train:
    input:
        unpack(lambda wildcards: training_files(wildcards.model)),
    output:
        weights=f"{RESULTS}/models/{{model}}/weights.pt",
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


rule calibrate:
    input:
        unpack(lambda wildcards: validation_files(wildcards.model)),
        weights=f"{RESULTS}/models/{{model}}/weights.pt",
    output:
        model=f"{RESULTS}/models/{{model}}/model.pt",
        validation=report(
            f"{RESULTS}/models/{{model}}/validation.png",
            caption="../report/validation.rst",
            category="Training",
            subcategory="{model}",
        ),
        reliability=report(
            f"{RESULTS}/models/{{model}}/reliability.png",
            caption="../report/reliability.rst",
            category="Training",
            subcategory="{model}",
        ),
    log:
        "logs/calibrate/{model}.log",
    params:
        # The sampler the model is calibrated for becomes the model file's sampler defaults: changing it
        # recalibrates and re-samples, and retrains nothing.
        sampler=lambda wildcards: canonical(MODELS[wildcards.model]["sampler"]),
        subjects=VAL or TRAIN[:1],
        seed=config["seed"],
    wildcard_constraints:
        model="|".join(TRAINED) or "(?!)",
    threads: 1
    resources:
        gpu=GPUS,
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/calibrate.py"

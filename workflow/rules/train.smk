# Stage 4: the conditional diffusion model, trained once on all training pairs (a GPU job).


rule train:
    input:
        unpack(lambda wildcards: pair_files(TRAIN + VAL)),
    output:
        model=f"{RESULTS}/models/{MODEL}/model.pt",
        log_csv=f"{RESULTS}/models/{MODEL}/train_log.csv",
        curves=report(
            f"{RESULTS}/models/{MODEL}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        validation=report(
            f"{RESULTS}/models/{MODEL}/validation.png",
            caption="../report/validation.rst",
            category="Training",
        ),
    log:
        "logs/train.log",
    params:
        train_subjects=TRAIN,
        val_subjects=VAL,
        model=settings("model"),
        diffusion=settings("diffusion"),
        train=settings("train"),
        degradation=settings("pairs"),  # the blurred training copies are degraded the same way
        seed=config["seed"],
        checkpoint=f"{RESULTS}/models/{MODEL}/checkpoint.pt",
    threads: 1
    resources:
        gpu=GPUS,
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/train.py"

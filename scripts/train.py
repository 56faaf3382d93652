"""Rule train: one model from all training pairs, through torchrun."""
from mrisr.config import trainable_model
from mrisr.provenance import provenance
from mrisr.train import run_training
from mrisr.workflow import run_rule


def main(snakemake):
    params, output = snakemake.params, snakemake.output

    def pairs(subjects):
        return {s: {kind: snakemake.input[f"{kind}_{s}"] for kind in ("hr", "lr", "mask")} for s in subjects}

    run_training(
        name=snakemake.wildcards.model, model=params.model,
        sampler=trainable_model(snakemake.config, snakemake.wildcards.model)["sampler"], degradation=params.degradation,
        train_subjects=pairs(params.train_subjects), val_subjects=pairs(params.val_subjects), seed=params.seed,
        folder=params.folder, outputs={"model": output.model, "log": output.log_csv, "curves": output.curves,
                                       "validation": output.validation},
        threads=snakemake.threads, gpus=snakemake.resources.gpu, log_path=snakemake.log[0],
        provenance=provenance(snakemake.scriptdir),
    )


run_rule(snakemake, main)  # noqa: F821

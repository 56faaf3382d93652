"""Rule train: the diffusion model from all training pairs."""
from mrisr.provenance import provenance
from mrisr.train import run_training
from mrisr.workflow import run_rule


def main(snakemake):
    params, output = snakemake.params, snakemake.output

    def pairs(subjects):
        return {s: {kind: snakemake.input[f"{kind}_{s}"] for kind in ("hr", "lr", "mask")} for s in subjects}

    run_training(
        pairs(params.train_subjects), pairs(params.val_subjects),
        model_settings=params.model, diffusion_settings=params.diffusion,
        train_settings={"seed": params.seed, **params.train}, degradation=params.degradation,
        model_path=output.model, log_path=output.log_csv, curves_path=output.curves,
        validation_path=output.validation, checkpoint_path=params.checkpoint,
        provenance=provenance(snakemake.scriptdir),
    )


run_rule(snakemake, main)  # noqa: F821

"""Rule train: one model from all training pairs, through torchrun."""
import nibabel as nib

from mrisr.grids import voxel_sizes
from mrisr.model.launch import run_training
from mrisr.model.spec import model_spec
from mrisr.provenance import provenance
from mrisr.workflow import run_rule


def main(snakemake):
    params, output, name = snakemake.params, snakemake.output, snakemake.wildcards.model

    def pairs(subjects):
        return {s: {kind: snakemake.input[f"{kind}_{s}"] for kind in ("hr", "lr", "mask")} for s in subjects}

    train_subjects = pairs(params.train_subjects)
    hr_voxel_mm = voxel_sizes(nib.load(next(iter(train_subjects.values()))["hr"]).affine).tolist()
    spec = model_spec(snakemake.config, name, hr_voxel_mm, params.train_subjects, provenance(snakemake.scriptdir))
    run_training(name, spec, train_subjects, pairs(params.val_subjects), params.seed, params.folder,
                 {"model": output.weights, "log": output.log_csv, "curves": output.curves}, snakemake.threads,
                 snakemake.resources.gpu, snakemake.log[0])


run_rule(snakemake, main)  # noqa: F821

"""Rule calibrate: a trained model sampled on the validation subjects, its calibration fitted and stored in the
model file."""
from mrisr.inference.volume import calibrate_model
from mrisr.workflow import run_rule


def main(snakemake):
    i, o, params = snakemake.input, snakemake.output, snakemake.params
    validation = {subject: {kind: i[f"{kind}_{subject}"] for kind in ("hr", "lr", "mask")}
                  for subject in params.subjects}
    calibrate_model(i.weights, validation, params.sampler, params.seed, o.model, o.validation, o.reliability)


run_rule(snakemake, main)  # noqa: F821

"""Rule preprocess: one raw T1w into template space, with its QC (kept under logs/ even when the subject fails)."""
from mrisr.workflow import run_rule


def main(snakemake):
    from mrisr.preprocess.pipeline import preprocess_to_files

    output, log = snakemake.output, snakemake.log
    preprocess_to_files(
        snakemake.input.raw, output.brain, output.mask, output.transform, output.timing, output.qc, output.qc_csv,
        log_qc=log.qc, log_qc_csv=log.qc_csv, subject=snakemake.wildcards.subject,
        settings=snakemake.params.settings, seed=snakemake.params.seed,
    )


run_rule(snakemake, main)  # noqa: F821

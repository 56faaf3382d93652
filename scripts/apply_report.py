"""Rule apply_report: one page with every applied scan, and each model's BIDS-derivatives dataset description."""
from mrisr.evaluation.report import build_apply_report
from mrisr.provenance import provenance
from mrisr.workflow import run_rule


def main(snakemake):
    i, params = snakemake.input, snakemake.params
    build_apply_report(list(i.sidecars), list(i.panels), params.jobs, params.config, provenance(snakemake.scriptdir),
                       snakemake.output.html, list(snakemake.output.descriptions))


run_rule(snakemake, main)  # noqa: F821

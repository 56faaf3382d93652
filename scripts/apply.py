"""Rule apply: one of the user's own LR scans super-resolved by one model, written as BIDS derivatives."""
from mrisr.inference.scan import ScanOutputs, super_resolve_scan
from mrisr.provenance import provenance
from mrisr.workflow import run_rule


def main(snakemake):
    output, params = snakemake.output, snakemake.params
    super_resolve_scan(
        snakemake.input.scan, snakemake.input.model, params.sampler,
        ScanOutputs(output.estimate, output.sd, output.mask, output.sidecar, output.panel, output.get("scale"),
                    output.get("lower"), output.get("upper")), params.seed,
        stripped_max_ml=params.stripped_max_ml, provenance=provenance(snakemake.scriptdir), **params.settings,
    )


run_rule(snakemake, main)  # noqa: F821

"""Rule fetch (data.source: embedded): one embedded sample subject."""
from mrisr.data.embedded import fetch_embedded_subject
from mrisr.workflow import run_rule


def main(snakemake):
    settings = snakemake.params.settings
    fetch_embedded_subject(
        snakemake.wildcards.subject, snakemake.output.raw, seed=snakemake.params.seed,
        max_displacement_mm=settings["max_displacement_mm"], bias_strength=settings["bias_strength"],
        gamma_range=settings["gamma_range"],
    )


run_rule(snakemake, main)  # noqa: F821 (snakemake is injected by Snakemake)

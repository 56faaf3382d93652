"""Rule fetch (data.source: local): one of the user's own scans."""
from mrisr.data.local import import_scan
from mrisr.workflow import run_rule


def main(snakemake):
    subject = snakemake.wildcards.subject
    import_scan(snakemake.params.source_file, snakemake.output.raw, subject=subject, source="local",
                real_volume=subject, real_person=True, description="user scan")


run_rule(snakemake, main)  # noqa: F821

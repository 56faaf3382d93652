"""Rule check_hcp_access: the AWS keys work and every subject's file is in the bucket (once, before any download)."""
from mrisr.data.hcp import check_access, s3_client
from mrisr.io import write_json
from mrisr.workflow import run_rule


def main(snakemake):
    hcp = snakemake.params.settings
    client = s3_client(hcp["aws_profile"], hcp["endpoint_url"])
    write_json(check_access(client, hcp["bucket"], snakemake.params.subjects, hcp["file"], hcp["prefix"]),
               snakemake.output.access)


run_rule(snakemake, main)  # noqa: F821

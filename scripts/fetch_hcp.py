"""Rule fetch (data.source: hcp): one HCP subject from S3 (verified download cache, then the raw T1w)."""
from mrisr.data.hcp import fetch_hcp_subject
from mrisr.data.local import import_scan
from mrisr.workflow import run_rule


def main(snakemake):
    subject, hcp = snakemake.wildcards.subject, snakemake.params.settings
    cached = snakemake.params.download
    download = fetch_hcp_subject(subject, cached, hcp)
    import_scan(cached, snakemake.output.raw, subject=subject, source="hcp", real_volume=subject, real_person=True,
                description=f"HCP {subject}: s3://{hcp['bucket']}/{download['key']}", etag=download["etag"])


run_rule(snakemake, main)  # noqa: F821

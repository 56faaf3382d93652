"""The workflow's HCP path against a real S3 server: credentials are checked before any job, files land."""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import boto3
import nibabel as nib
import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from conftest import snakemake  # noqa: E402
from s3_server import start_moto_server, stop_process  # noqa: E402

from helpers import load_config  # noqa: E402
from mrisr.data.hcp import hcp_key  # noqa: E402

HCP = load_config()["data"]["hcp"]

pytestmark = pytest.mark.slow  # the workflow against an S3 server

SECRET = "workflow-test-SECRET-must-not-leak-77"
SUBJECTS = ["100307", "100408"]


@pytest.fixture(scope="module")
def hcp_bucket(tmp_path_factory):
    process, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="admin", aws_secret_access_key="admin")
        client.create_bucket(Bucket="hcp-openaccess")
        for index, subject in enumerate(SUBJECTS):
            volume = np.random.default_rng(index).random((20, 24, 20), dtype=np.float32) * 1000
            image = nib.Nifti1Image(volume, np.diag([0.7, 0.7, 0.7, 1.0]))
            client.put_object(Bucket="hcp-openaccess", Key=hcp_key(subject, HCP["file"], HCP["prefix"]),
                              Body=gzip.compress(image.to_bytes()))
        yield endpoint
    finally:
        stop_process(process)


@pytest.fixture
def hcp_config(tmp_path, hcp_bucket):
    config = {"data": {"source": "hcp", "hcp": {"subjects": SUBJECTS, "endpoint_url": hcp_bucket,
                                                 "file": "T1w_acpc_dc_restore", "bucket": "hcp-openaccess",
                                                 "prefix": "HCP_1200", "aws_profile": None}},
              "split": {"train": ["100307"], "val": [], "test": ["100408"]}}
    path = tmp_path / "hcp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def no_aws_config(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty_aws_config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_missing_credentials_stop_the_run_before_any_job(tmp_path, hcp_config, no_aws_config):
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--configfile", str(hcp_config), "--dry-run", check=False)
    assert result.returncode != 0
    assert "ConnectomeDB" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "results").exists()


def test_fetch_downloads_verifies_and_keeps_the_secret_out(tmp_path, hcp_config, no_aws_config, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWORKFLOWTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    workdir = tmp_path / "run"
    workdir.mkdir()
    targets = [f"results/raw/{subject}/T1w.nii.gz" for subject in SUBJECTS]
    result = snakemake(workdir, *targets, "--configfile", str(hcp_config))
    for subject in SUBJECTS:
        raw = nib.load(workdir / f"results/raw/{subject}/T1w.nii.gz")
        assert raw.shape == (20, 24, 20)
        sidecar = json.loads((workdir / f"results/raw/{subject}/T1w.json").read_text())
        assert sidecar["source"] == "hcp" and sidecar["etag"]
        assert (workdir / f"results/downloads/{subject}/T1w.nii.gz").is_file()
    written = [p for p in workdir.rglob("*") if p.is_file() and p.stat().st_size < 5_000_000]
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
    assert SECRET not in result.stdout + result.stderr

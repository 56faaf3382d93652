"""Tests for mrisr.data.hcp against a real S3 server (moto_server subprocess) on localhost."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import sys
from pathlib import Path

import boto3
import nibabel as nib
import numpy as np
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import FaultProxy, set_moto_auth, start_moto_server, stop_process  # noqa: E402

from helpers import load_config  # noqa: E402
from mrisr.data import hcp  # noqa: E402
from mrisr.data.hcp import HCP_FILES, check_access, download, read_subject_list, s3_client, sidecar_path  # noqa: E402
from mrisr.io import MrisrError  # noqa: E402

HCP = load_config()["data"]["hcp"]  # the config's bucket, prefix and file
BUCKET = HCP["bucket"]
SECRET = "mrisr-test-SECRET-do-not-leak-8f3a9c"
FAST = {"backoff_s": 0.01}


def hcp_key(subject: str, file_choice: str = HCP["file"]) -> str:
    return hcp.hcp_key(subject, file_choice, HCP["prefix"])


def fetch_hcp_subject(subject, dest, file_choice=HCP["file"], endpoint_url=None, **options):
    return hcp.fetch_hcp_subject(subject, dest, {**HCP, "file": file_choice, "endpoint_url": endpoint_url}, **options)


def nifti_bytes(seed: int, shape: tuple[int, ...] = (16, 16, 16)) -> bytes:
    data = np.random.default_rng(seed).random(shape, dtype=np.float32)
    image = nib.Nifti1Image(data, np.diag([0.7, 0.7, 0.7, 1.0]))
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto_server on a free port with an HCP-like bucket; yields (endpoint, {key: bytes})."""
    process, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        # Old-style uploads without flexible checksums, like the HCP bucket: only the ETag protects them.
        admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                             aws_access_key_id="admin", aws_secret_access_key="admin",
                             config=Config(request_checksum_calculation="when_required",
                                           s3={"addressing_style": "path"}))
        admin.create_bucket(Bucket=BUCKET)
        objects = {
            hcp_key("100307"): nifti_bytes(1),
            hcp_key("100408"): nifti_bytes(2),
            hcp_key("100307", "T1w_acpc_dc_restore_brain"): nifti_bytes(3),
            hcp_key("100307", "unprocessed"): nifti_bytes(4),
            hcp_key("notnifti"): b"this is not a NIfTI file\n" * 100,
        }
        for key, body in objects.items():
            admin.put_object(Bucket=BUCKET, Key=key, Body=body)
        big = nifti_bytes(5, (150, 150, 140))  # ~12 MB gzipped, uploaded in 5 MB parts
        big_key = hcp_key("101915")
        admin.upload_fileobj(io.BytesIO(big), BUCKET, big_key, Config=TransferConfig(
            multipart_threshold=5 << 20, multipart_chunksize=5 << 20, use_threads=False))
        objects[big_key] = big
        yield endpoint, objects
    finally:
        stop_process(process)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path_factory):
    """Fake keys in env vars; empty AWS config files so the machine's own config cannot leak in.

    Yields the (empty) shared credentials file.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    aws_dir = tmp_path_factory.mktemp("aws")
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        (aws_dir / name).write_text("")
        monkeypatch.setenv(name, str(aws_dir / name))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield aws_dir / "AWS_SHARED_CREDENTIALS_FILE"


@pytest.fixture(autouse=True)
def secret_never_logged(caplog):
    """Every test runs with full DEBUG logging (botocore included); the secret must never appear in it."""
    caplog.set_level(logging.DEBUG)
    yield
    assert SECRET not in caplog.text


def assert_clean(error: pytest.ExceptionInfo, directory: Path) -> None:
    """The error does not show the secret, and no file (dest, sidecar or temp) was left behind."""
    assert SECRET not in str(error.value) and SECRET not in repr(error.value)
    assert error.value.__cause__ is None or SECRET not in str(error.value.__cause__)
    assert list(directory.iterdir()) == []


def test_hcp_keys_follow_bucket_layout():
    assert set(HCP_FILES) == {"T1w_acpc_dc_restore", "T1w_acpc_dc_restore_brain", "unprocessed"}
    assert hcp_key("100307") == "HCP_1200/100307/T1w/T1w_acpc_dc_restore.nii.gz"
    assert hcp_key("100307", "unprocessed") == "HCP_1200/100307/unprocessed/3T/T1w_MPR1/100307_3T_T1w_MPR1.nii.gz"
    with pytest.raises(MrisrError, match="T1w_acpc_dc_restore_brain"):
        hcp_key("100307", "T2w")


def test_good_fetch(s3, tmp_path):
    endpoint, objects = s3
    dest = tmp_path / "100307.nii.gz"
    info = fetch_hcp_subject("100307", dest, endpoint_url=endpoint, **FAST)
    body = objects[hcp_key("100307")]
    assert dest.read_bytes() == body
    md5 = hashlib.md5(body).hexdigest()
    assert info == {"subject": "100307", "bucket": BUCKET, "key": hcp_key("100307"), "size": len(body),
                    "etag": md5, "md5": md5, "seconds": info["seconds"], "skipped": False}
    assert json.loads(sidecar_path(dest).read_text()) == {
        "bucket": BUCKET, "key": hcp_key("100307"), "size": len(body), "etag": md5, "md5": md5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100307.nii.gz", "100307.nii.gz.json"]


def test_other_file_choices(s3, tmp_path):
    endpoint, objects = s3
    for choice in ("T1w_acpc_dc_restore_brain", "unprocessed"):
        dest = tmp_path / f"{choice}.nii.gz"
        fetch_hcp_subject("100307", dest, file_choice=choice, endpoint_url=endpoint, **FAST)
        assert dest.read_bytes() == objects[hcp_key("100307", choice)]


def test_second_fetch_is_skipped(s3, tmp_path):
    endpoint, _ = s3
    dest = tmp_path / "100307.nii.gz"
    with FaultProxy(endpoint) as proxy:
        fetch_hcp_subject("100307", dest, endpoint_url=proxy.url, **FAST)
        mtime = dest.stat().st_mtime_ns
        gets = proxy.gets()
        info = fetch_hcp_subject("100307", dest, endpoint_url=proxy.url, **FAST)
        assert info["skipped"] is True
        assert proxy.gets() == gets  # only a HEAD, no transfer
    assert dest.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_sidecar"])
def test_damaged_local_copy_is_downloaded_again(s3, tmp_path, damage):
    endpoint, objects = s3
    client = s3_client(None, endpoint)
    key = hcp_key("100408")
    dest = tmp_path / "100408.nii.gz"
    download(client, BUCKET, key, dest, **FAST)
    data = bytearray(dest.read_bytes())
    if damage == "truncate":
        dest.write_bytes(data[:-100])
    elif damage == "flip_byte":  # same size, so only the checksum can tell
        data[len(data) // 2] ^= 0xFF
        dest.write_bytes(data)
    else:
        sidecar_path(dest).unlink()
    info = download(client, BUCKET, key, dest, **FAST)
    assert info["skipped"] is False
    assert dest.read_bytes() == objects[key]


def test_changed_object_is_downloaded_again(s3, tmp_path):
    endpoint, _ = s3
    client = s3_client(None, endpoint)
    key = "HCP_1200/changing/T1w/T1w_acpc_dc_restore.nii.gz"
    dest = tmp_path / "changing.nii.gz"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"version 1")
    download(client, BUCKET, key, dest, **FAST)
    client.put_object(Bucket=BUCKET, Key=key, Body=b"version 2")
    info = download(client, BUCKET, key, dest, **FAST)
    assert (info["skipped"], dest.read_bytes()) == (False, b"version 2")


def test_multipart_object_is_verified(s3, tmp_path):
    endpoint, objects = s3
    dest = tmp_path / "101915.nii.gz"
    info = fetch_hcp_subject("101915", dest, endpoint_url=endpoint, **FAST)
    assert info["etag"].endswith("-3")  # 5 + 5 + 2.6 MB parts
    assert dest.read_bytes() == objects[hcp_key("101915")]


@pytest.mark.parametrize("subject", ["100307", "101915"], ids=["plain-etag", "multipart-etag"])
def test_corruption_in_transit_fails_and_leaves_nothing(s3, tmp_path, subject):
    endpoint, _ = s3
    with FaultProxy(endpoint) as proxy:
        proxy.corrupt_next = 99
        with pytest.raises(MrisrError, match="checksum mismatch") as error:
            fetch_hcp_subject(subject, tmp_path / "t1w.nii.gz", endpoint_url=proxy.url, attempts=3, **FAST)
        assert proxy.gets() == 3
    assert hcp_key(subject) in str(error.value)
    assert_clean(error, tmp_path)


def test_corruption_once_is_retried(s3, tmp_path):
    endpoint, objects = s3
    dest = tmp_path / "100307.nii.gz"
    with FaultProxy(endpoint) as proxy:
        proxy.corrupt_next = 1
        fetch_hcp_subject("100307", dest, endpoint_url=proxy.url, **FAST)
        assert proxy.gets() == 2
    assert dest.read_bytes() == objects[hcp_key("100307")]


def test_dropped_connection_is_retried(s3, tmp_path):
    endpoint, objects = s3
    dest = tmp_path / "101915.nii.gz"
    with FaultProxy(endpoint) as proxy:
        proxy.drop_next = 2
        fetch_hcp_subject("101915", dest, endpoint_url=proxy.url, **FAST)
        assert proxy.gets() == 3
    assert dest.read_bytes() == objects[hcp_key("101915")]


def test_server_errors_then_success(s3, tmp_path, caplog):
    endpoint, objects = s3
    dest = tmp_path / "100307.nii.gz"
    with FaultProxy(endpoint) as proxy:
        proxy.fail_next = 3  # more than the client's own 2 attempts, so download() retries too
        client = s3_client(None, proxy.url, max_attempts=2)
        info = download(client, BUCKET, hcp_key("100307"), dest, **FAST)
        assert [status for _, _, status in proxy.requests[:3]] == [503, 503, 503]
    assert info["skipped"] is False and dest.read_bytes() == objects[hcp_key("100307")]
    assert "retrying" in caplog.text


def test_verified_copy_survives_a_failed_check(s3, tmp_path):
    """A 503 while checking a verified local copy must neither delete it nor download it again."""
    endpoint, _ = s3
    dest = tmp_path / "100307.nii.gz"
    with FaultProxy(endpoint) as proxy:
        client = s3_client(None, proxy.url, max_attempts=1)
        download(client, BUCKET, hcp_key("100307"), dest, **FAST)
        gets = proxy.gets()
        proxy.fail_next = 1
        assert download(client, BUCKET, hcp_key("100307"), dest, **FAST)["skipped"] is True
        assert proxy.gets() == gets


def test_server_errors_forever_fail_cleanly(s3, tmp_path):
    endpoint, _ = s3
    with FaultProxy(endpoint) as proxy:
        proxy.fail_next = 10**6
        client = s3_client(None, proxy.url, max_attempts=1)
        with pytest.raises(MrisrError, match="after 3 attempts.*503") as error:
            download(client, BUCKET, hcp_key("100307"), tmp_path / "x.nii.gz", attempts=3, **FAST)
    assert_clean(error, tmp_path)


def test_not_a_nifti_is_removed(s3, tmp_path):
    endpoint, _ = s3
    with pytest.raises(MrisrError, match="notnifti.*not a usable T1w") as error:
        fetch_hcp_subject("notnifti", tmp_path / "x.nii.gz", endpoint_url=endpoint, **FAST)
    assert_clean(error, tmp_path)


def test_check_access_ok(s3):
    endpoint, objects = s3
    found = check_access(s3_client(None, endpoint), BUCKET, ["100307", "101915"], "T1w_acpc_dc_restore", HCP["prefix"])
    assert found["101915"]["size"] == len(objects[hcp_key("101915")])


def test_missing_subject(s3, tmp_path):
    endpoint, _ = s3
    client = s3_client(None, endpoint)
    with pytest.raises(MrisrError, match="999999") as error:
        check_access(client, BUCKET, ["100307", "999999"], "T1w_acpc_dc_restore", HCP["prefix"])
    assert hcp_key("999999") in str(error.value) and "100307" not in str(error.value).split(":", 1)[1]
    with pytest.raises(MrisrError, match="100408") as error:  # exists, but not this file choice
        check_access(client, BUCKET, ["100408"], "unprocessed", HCP["prefix"])
    with pytest.raises(MrisrError, match="999999") as error:
        fetch_hcp_subject("999999", tmp_path / "x.nii.gz", endpoint_url=endpoint, **FAST)
    assert_clean(error, tmp_path)


def test_missing_credentials(s3, monkeypatch, tmp_path):
    endpoint, _ = s3
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(MrisrError, match="ConnectomeDB.*db.humanconnectome.org"):
        check_access(s3_client(None, endpoint), BUCKET, ["100307"], "T1w_acpc_dc_restore", HCP["prefix"])
    with pytest.raises(MrisrError, match="'hcp' not found.*ConnectomeDB"):
        s3_client("hcp", endpoint)
    with pytest.raises(MrisrError, match="ConnectomeDB") as error:
        fetch_hcp_subject("100307", tmp_path / "x.nii.gz", endpoint_url=endpoint, **FAST)
    assert_clean(error, tmp_path)


def test_profile_credentials(s3, monkeypatch, aws_env):
    endpoint, _ = s3
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws_env.write_text(
        f"[hcp]\naws_access_key_id = testing\naws_secret_access_key = {SECRET}\n")
    assert check_access(s3_client("hcp", endpoint), BUCKET, ["100307"], "T1w_acpc_dc_restore", HCP["prefix"])


def test_rejected_credentials(s3, monkeypatch, tmp_path):
    """moto checks signatures against its IAM keys once auth is on: unknown keys and wrong secrets get 403."""
    endpoint, _ = s3
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="hcp-reader")
    iam.put_user_policy(UserName="hcp-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName="hcp-reader")["AccessKey"]
    set_moto_auth(endpoint, 0)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        assert check_access(s3_client(None, endpoint), BUCKET, ["100307"], "T1w_acpc_dc_restore", HCP["prefix"])
        wrong_secret = (key["AccessKeyId"], "SignatureDoesNotMatch")
        unknown_key = ("AKIAUNKNOWNKEY000000", "InvalidAccessKeyId")
        for key_id, code in (wrong_secret, unknown_key):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
            with pytest.raises(MrisrError, match=f"{code}.*rejected.*ConnectomeDB") as error:
                check_access(s3_client(None, endpoint), BUCKET, ["100307"], "T1w_acpc_dc_restore", HCP["prefix"])
            assert SECRET not in str(error.value)
            with pytest.raises(MrisrError, match=f"{code}.*rejected.*ConnectomeDB") as error:
                fetch_hcp_subject("100307", tmp_path / "x.nii.gz", endpoint_url=endpoint, **FAST)
            assert_clean(error, tmp_path)
    finally:
        set_moto_auth(endpoint, float("inf"))


def test_read_subject_list(tmp_path):
    assert read_subject_list(["100307", 100408]) == ["100307", "100408"]
    assert read_subject_list(100307) == ["100307"]
    (tmp_path / "s.csv").write_text("age,subject\n22,100307\n30,100408\n")
    assert read_subject_list(tmp_path / "s.csv") == ["100307", "100408"]
    (tmp_path / "s.tsv").write_text("subject\tsex\n100307\tF\n\n101915\tM\n")
    assert read_subject_list(str(tmp_path / "s.tsv")) == ["100307", "101915"]
    (tmp_path / "ids.txt").write_text("100307\n# comment\n100408\n")
    assert read_subject_list(tmp_path / "ids.txt") == ["100307", "100408"]


@pytest.mark.parametrize("value, message", [
    ("missing.csv", "not found"),
    ([], "empty"),
    ("empty.csv", "empty"),
    (["100307", "100408", "100307"], "duplicate subject IDs 100307"),
    ("nosubject.csv", "no 'subject' column"),
    (["100 307"], "invalid subject IDs"),
    (3.5, "expected a list"),
])
def test_read_subject_list_errors(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.csv").write_text("subject\n")
    (tmp_path / "nosubject.csv").write_text("id,age\n100307,22\n")
    with pytest.raises(MrisrError, match=message):
        read_subject_list(value)

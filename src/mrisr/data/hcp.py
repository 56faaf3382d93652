"""Fetching Human Connectome Project T1w volumes from the HCP open-access S3 bucket.

HCP data is free but gated: each user needs AWS keys issued by ConnectomeDB.
The workflow calls :func:`check_credentials` (a local look-up) before any job
starts and :func:`check_access` (one request per subject) in the first job, so
missing or wrong keys and mistyped subject IDs stop the run at once with a
message that says what to do, instead of failing one job per subject.  The
bucket, prefix and file come from the config's ``data.hcp`` section.  Each file is
then fetched by :func:`download`, which only puts a file in place once its
size and checksum match what S3 reports, and records that in a sidecar so a
rerun does not fetch the same file again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable

import boto3
import botocore.exceptions as bexc
from botocore.config import Config
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from ..io import MrisrError, atomic_path, load_volume, write_json

log = logging.getLogger(__name__)

HCP_FILES: dict[str, str] = {
    "T1w_acpc_dc_restore": "T1w/T1w_acpc_dc_restore.nii.gz",  # default: 0.7 mm, bias-corrected
    "T1w_acpc_dc_restore_brain": "T1w/T1w_acpc_dc_restore_brain.nii.gz",  # already skull-stripped
    "unprocessed": "unprocessed/3T/T1w_MPR1/{subject}_3T_T1w_MPR1.nii.gz",
}
DOWNLOAD_ATTEMPTS = 4
BACKOFF_S = 2.0  # wait before retry n is BACKOFF_S * 2**(n-1)
CHUNK_BYTES = 1 << 20
MAX_PARTS_CHECKED = 100  # beyond this many parts a multipart object is checked by size only

CREDENTIALS_HELP = (
    "HCP data needs ConnectomeDB AWS keys: sign in at https://db.humanconnectome.org, "
    "accept the Open Access terms, create AWS credentials, then set "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or `data.hcp.aws_profile` in the config"
)
_REJECTED_CODES = {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId",
                   "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_TRANSIENT_CODES = {"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException",
                    "RequestLimitExceeded", "TooManyRequests", "PreconditionFailed", "412"}


class _TransferProblem(Exception):
    """A download that arrived incomplete or altered; worth another attempt."""


def read_subject_list(value: str | os.PathLike | int | Iterable[str | int]) -> list[str]:
    """Subject IDs from the config: a list of IDs, or a CSV/TSV with a ``subject`` column or one column of IDs."""
    if isinstance(value, int) and not isinstance(value, bool):
        subjects = [str(value)]
    elif isinstance(value, (str, os.PathLike)):
        subjects = _read_subject_file(Path(value))
    elif isinstance(value, Iterable):
        subjects = [str(item).strip() for item in value]
    else:
        raise MrisrError(f"subjects: expected a list of subject IDs or a CSV/TSV path, got {value!r}")
    if not subjects:
        raise MrisrError(f"subjects: the subject list {value!r} is empty")
    bad = [s for s in subjects if not s or "/" in s or any(c.isspace() for c in s)]
    if bad:
        raise MrisrError(f"subjects: invalid subject IDs {bad!r} (IDs must be non-empty, without spaces or '/')")
    duplicates = sorted({s for s in subjects if subjects.count(s) > 1})
    if duplicates:
        raise MrisrError(f"subjects: duplicate subject IDs {', '.join(duplicates)}; list each subject once")
    return subjects


def _read_subject_file(path: Path) -> list[str]:
    if not path.is_file():
        raise MrisrError(f"{path}: subject list file not found (give a list of IDs or a CSV/TSV path)")
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle, delimiter=delimiter)]
    rows = [row for row in rows if any(row) and not row[0].startswith("#")]
    if not rows:
        return []
    header = [cell.lower() for cell in rows[0]]
    if "subject" in header:
        column = header.index("subject")
        return [row[column] if column < len(row) else "" for row in rows[1:]]
    if max(len(row) for row in rows) == 1:
        return [row[0] for row in rows]
    raise MrisrError(f"{path}: no 'subject' column (found columns {rows[0]}); add a header named 'subject'")


def hcp_key(subject: str, file_choice: str, prefix: str) -> str:
    """The S3 key of one subject's file, e.g. ``HCP_1200/100307/T1w/T1w_acpc_dc_restore.nii.gz``."""
    if file_choice not in HCP_FILES:
        raise MrisrError(f"data.hcp.file: unknown choice {file_choice!r}; "
                         f"choose one of {', '.join(HCP_FILES)}")
    return f"{prefix}/{subject}/" + HCP_FILES[file_choice].format(subject=subject)


def s3_client(profile: str | None, endpoint_url: str | None = None, region: str = "us-east-1",
              max_attempts: int = 5) -> Any:
    """An S3 client using the AWS profile ``profile``, or the standard AWS env vars/files when None."""
    config = Config(
        region_name=region,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # S3-compatible mirrors and local test servers want bucket names in the path.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return s3_session(profile).client("s3", endpoint_url=endpoint_url, config=config)


def s3_session(profile: str | None) -> Any:
    """A boto3 session with the AWS profile ``profile``, or the standard AWS env vars/files when None."""
    try:
        return boto3.Session(profile_name=profile or None)
    except bexc.ProfileNotFound:
        raise MrisrError(f"AWS profile {profile!r} not found in the AWS config files. {CREDENTIALS_HELP}") from None


def check_credentials(profile: str | None) -> None:
    """Raise :class:`MrisrError` with the ConnectomeDB line when no AWS credentials are set up (no request to S3)."""
    if s3_session(profile).get_credentials() is None:
        raise MrisrError(f"no AWS credentials found. {CREDENTIALS_HELP}")


def check_access(client: Any, bucket: str, subjects: Iterable[str], file_choice: str,
                 prefix: str) -> dict[str, dict[str, Any]]:
    """Check that the keys work and every subject's file exists; returns ``{subject: {key, size, etag}}``."""
    found: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for subject in subjects:
        key = hcp_key(subject, file_choice, prefix)
        try:
            head = _head_object(client, bucket, key)
        except (bexc.ClientError, bexc.BotoCoreError) as error:
            if isinstance(error, bexc.ClientError) and _error_code(error) in _MISSING_CODES:
                missing.append(f"{subject} (s3://{bucket}/{key})")
                continue
            raise MrisrError(f"cannot check s3://{bucket}/{key}: {_describe(error)}") from None
        found[subject] = {"key": key, "size": head["ContentLength"], "etag": _etag(head)}
    if missing:
        raise MrisrError(f"HCP subject file not found for {len(missing)} subject(s): "
                         + "; ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                         + f". Check the subject IDs and data.hcp.file ({file_choice})")
    log.info("HCP access OK: %d subject(s), %.1f MB in s3://%s", len(found),
             sum(f["size"] for f in found.values()) / 1e6, bucket)
    return found


def _head_object(client: Any, bucket: str, key: str, **extra: Any) -> dict[str, Any]:
    """head_object, turning missing or rejected credentials into the ConnectomeDB message."""
    try:
        return client.head_object(Bucket=bucket, Key=key, **extra)
    except (bexc.NoCredentialsError, bexc.PartialCredentialsError):
        raise MrisrError(f"no AWS credentials found. {CREDENTIALS_HELP}") from None
    except bexc.ClientError as error:
        code = _error_code(error)
        if code == "403":  # HEAD answers carry no error code; a 1-byte GET says which check failed
            code = _get_error_code(client, bucket, key) or code
        if code in _REJECTED_CODES:
            raise MrisrError(f"S3 refused access to s3://{bucket}/{key} ({code}): the AWS keys were rejected "
                             f"or do not grant access to this bucket. {CREDENTIALS_HELP}") from None
        if code == "NoSuchBucket":
            raise MrisrError(f"S3 bucket {bucket!r} does not exist; check data.hcp.bucket") from None
        raise


def _get_error_code(client: Any, bucket: str, key: str) -> str | None:
    try:
        client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].close()
    except bexc.ClientError as error:
        return _error_code(error)
    except bexc.BotoCoreError:
        pass
    return None


def _error_code(error: bexc.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _etag(head: dict[str, Any]) -> str:
    return str(head.get("ETag", "")).strip('"')


def _is_transient(error: Exception) -> bool:
    """True for failures that another attempt may cure: 5xx, throttling, dropped connections, bad bytes."""
    if isinstance(error, bexc.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or _error_code(error) in _TRANSIENT_CODES
    return isinstance(error, (_TransferProblem, bexc.HTTPClientError, bexc.IncompleteReadError,
                              bexc.FlexibleChecksumError, Urllib3HTTPError, ConnectionError, TimeoutError))


def sidecar_path(dest: str | os.PathLike) -> Path:
    """Where :func:`download` records the provenance of ``dest``: ``<dest>.json``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".json")


def download(client: Any, bucket: str, key: str, dest: str | os.PathLike, attempts: int = DOWNLOAD_ATTEMPTS,
             backoff_s: float = BACKOFF_S) -> dict[str, Any]:
    """Download s3://bucket/key to ``dest``, checked against S3's size and ETag; skipped if a verified copy is there.

    Retries the whole transfer on 5xx, throttling, dropped connections and
    checksum mismatches; on final failure raises MrisrError and leaves no file.
    """
    dest, sidecar = Path(dest), sidecar_path(dest)
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        start = time.monotonic()
        try:
            head = _head_object(client, bucket, key)
            size, etag = int(head["ContentLength"]), _etag(head)
            if md5 := _verified_copy_md5(dest, sidecar, bucket, key, size, etag):
                log.info("%s: verified copy of s3://%s/%s already there, not downloading", dest, bucket, key)
                return {"bucket": bucket, "key": key, "size": size, "etag": etag, "md5": md5,
                        "seconds": round(time.monotonic() - start, 3), "skipped": True}
            sidecar.unlink(missing_ok=True)
            dest.unlink(missing_ok=True)  # not verified: must not survive a failed download
            log.info("downloading s3://%s/%s (%.1f MB) to %s (attempt %d/%d)",
                     bucket, key, size / 1e6, dest, attempt, attempts)
            with atomic_path(dest) as tmp:
                _transfer(client, bucket, key, etag, tmp)
                md5 = _verify(client, bucket, key, tmp, size, etag, head)
            seconds = time.monotonic() - start
            info = {"bucket": bucket, "key": key, "size": size, "etag": etag, "md5": md5,
                    "seconds": round(seconds, 3), "skipped": False}
            write_json({k: info[k] for k in ("bucket", "key", "size", "etag", "md5")}, sidecar)
            log.info("downloaded s3://%s/%s in %.1f s (%.1f MB/s)", bucket, key, seconds,
                     size / 1e6 / max(seconds, 1e-6))
            return info
        except MrisrError:
            raise
        except Exception as error:
            reason = _describe(error)
            if isinstance(error, bexc.ClientError) and _error_code(error) in _MISSING_CODES:
                raise MrisrError(f"s3://{bucket}/{key} does not exist; "
                                 "check the subject ID and data.hcp.file") from None
            if not _is_transient(error):
                raise MrisrError(f"downloading s3://{bucket}/{key} failed: {reason}") from None
            if attempt == attempts:
                raise MrisrError(f"downloading s3://{bucket}/{key} failed after {attempts} attempts: "
                                 f"{reason}") from None
            wait = backoff_s * 2 ** (attempt - 1)
            log.warning("s3://%s/%s: attempt %d/%d failed (%s); retrying in %.1f s",
                        bucket, key, attempt, attempts, reason, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _describe(error: Exception) -> str:
    """A short reason that never includes request headers or credentials."""
    if isinstance(error, bexc.ClientError):
        err = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        code = "" if err.get("Code") == str(status) else f" {err.get('Code', '')}"
        return f"HTTP {status}{code} {err.get('Message', '')}".strip()
    if isinstance(error, _TransferProblem):
        return str(error)
    if isinstance(error, bexc.BotoCoreError):  # these messages hold no credentials
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


def _transfer(client: Any, bucket: str, key: str, etag: str, tmp: Path) -> None:
    """Stream the object into ``tmp``; If-Match makes S3 refuse if the object changed since HEAD."""
    body = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')["Body"]
    with closing(body), tmp.open("wb") as handle:
        for chunk in body.iter_chunks(CHUNK_BYTES):
            handle.write(chunk)


def _verify(client: Any, bucket: str, key: str, path: Path, size: int, etag: str, head: dict[str, Any]) -> str:
    """Check ``path`` against the object's size and ETag; returns the file's MD5 hex digest."""
    actual_size = path.stat().st_size
    if actual_size != size:
        raise _TransferProblem(f"size mismatch: got {actual_size} bytes, S3 says {size}")
    md5 = _file_md5(path)
    if "-" in etag:  # multipart upload: ETag is md5(concatenated part MD5s)-<number of parts>
        part_sizes = _part_sizes(client, bucket, key, int(etag.rsplit("-", 1)[1]))
        if part_sizes is None or sum(part_sizes) != size:
            log.warning("s3://%s/%s: multipart layout unknown, verified size only", bucket, key)
        elif (computed := _multipart_etag(path, part_sizes)) != etag:
            raise _TransferProblem(f"checksum mismatch: multipart ETag {computed} != {etag}")
    elif head.get("ServerSideEncryption") == "aws:kms" or len(etag) != 32:
        log.warning("s3://%s/%s: ETag is not an MD5, verified size only", bucket, key)
    elif md5 != etag:
        raise _TransferProblem(f"checksum mismatch: MD5 {md5} != ETag {etag}")
    return md5


def _part_sizes(client: Any, bucket: str, key: str, parts: int) -> list[int] | None:
    """Sizes of each uploaded part, from HEAD with PartNumber (None when S3 will not tell)."""
    if parts > MAX_PARTS_CHECKED:
        return None
    try:
        return [int(client.head_object(Bucket=bucket, Key=key, PartNumber=n)["ContentLength"])
                for n in range(1, parts + 1)]
    except bexc.ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            raise  # transient: retry the download rather than settle for a size check
        return None


def _multipart_etag(path: Path, part_sizes: list[int]) -> str:
    digests = b""
    with path.open("rb") as handle:
        for part_size in part_sizes:
            part = hashlib.md5()
            remaining = part_size
            while remaining and (chunk := handle.read(min(CHUNK_BYTES, remaining))):
                part.update(chunk)
                remaining -= len(chunk)
            digests += part.digest()
    return f"{hashlib.md5(digests).hexdigest()}-{len(part_sizes)}"


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_copy_md5(dest: Path, sidecar: Path, bucket: str, key: str, size: int, etag: str) -> str | None:
    """MD5 of ``dest`` if it is the verified copy its sidecar describes and S3 still holds that object."""
    if not (dest.is_file() and sidecar.is_file()):
        return None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    expected = {"bucket": bucket, "key": key, "size": size, "etag": etag}
    if any(record.get(name) != value for name, value in expected.items()) or dest.stat().st_size != size:
        return None
    md5 = _file_md5(dest)
    return md5 if md5 == record.get("md5") else None


def fetch_hcp_subject(subject: str, dest: str | os.PathLike, settings: dict, attempts: int = DOWNLOAD_ATTEMPTS,
                      backoff_s: float = BACKOFF_S) -> dict[str, Any]:
    """Download one subject's T1w file to ``dest`` and check it is a readable 3D NIfTI; returns provenance.

    ``settings`` is the config's ``data.hcp`` section (bucket, prefix, file, aws_profile, endpoint_url).
    """
    client = s3_client(settings["aws_profile"], settings["endpoint_url"])
    key = hcp_key(subject, settings["file"], settings["prefix"])
    info = download(client, settings["bucket"], key, dest, attempts=attempts, backoff_s=backoff_s)
    try:
        load_volume(dest)
    except MrisrError as error:
        Path(dest).unlink(missing_ok=True)
        sidecar_path(dest).unlink(missing_ok=True)
        raise MrisrError(f"HCP subject {subject}: downloaded file is not a usable T1w volume: {error}") from None
    return {"subject": subject, **info}

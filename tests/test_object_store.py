"""The lifecycle, governance and `lifecycle doctor` on an S3 artifact root, against a real
S3 endpoint served over HTTP on localhost (moto's server), through the locked s3fs.

A team deployment found that `LIFECYCLE_ARTIFACT_ROOT=s3://...` failed at the first output
(s3fs was not in the lock) and, once installed by hand, that `doctor` turned an object URI
into a local path (``s3://`` collapsed to ``s3:/``) and reported every package as missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import fsspec
import pytest
from moto.server import ThreadedMotoServer

from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from tests.conftest import (
    SAMPLE,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    committed_project_copy,
    dagster_home,
    free_port,
    lifecycle_cli,
)
from tests.reliability.cases import case

BUCKET = "lifecycle-artifacts"
MODEL = SAMPLE_MODEL.name


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3-compatible endpoint with one empty bucket, configured the way docs/deployment.md
    tells a team to point at MinIO or any S3-compatible store: ``AWS_ENDPOINT_URL``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "lifecycle-test",
        "AWS_SECRET_ACCESS_KEY": "lifecycle-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        fsspec.filesystem("s3").clear_instance_cache()
        server.stop()


@pytest.mark.slow
def test_a_lifecycle_on_s3_is_promoted_verified_and_checked_by_doctor(
    s3_endpoint: str,
    registry_copy: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = f"s3://{BUCKET}/artifacts"
    home = dagster_home(tmp_path / "dagster_home")
    for name, value in {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_ARTIFACT_ROOT": root,
        "LIFECYCLE_AUDIT_DIR": str(tmp_path / "audit"),
        "LIFECYCLE_REGISTRY_URL": str(registry_copy.repo),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIFECYCLE_MODEL", raising=False)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(
            model=SAMPLE_MODEL,
            registry=registry_copy.resource(),
            artifact_store=ArtifactStore(root=root),
        )
        pipeline = Pipeline(defs=defs, instance=instance, artifacts=tmp_path / "unused")
        assert pipeline.run("data-v1").success
        package = latest(instance, SAMPLE["deployment_package"], "data-v1")
        assert package is not None
        uri = str(metadata_values(package)["artifact/uri"])
        assert uri.startswith(f"{root}/"), uri
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(key.endswith("model.skops") for key in stored), stored
    assert not list((tmp_path).glob("**/model.skops"))  # nothing fell back to a local folder

    promote = ["promote", "data-v1", "--approver", "ana", "--reason", "first release"]
    commands = (["doctor"], ["verify", "data-v1"], promote, ["status"], ["audit", "verify"])
    for command in (*commands, ["doctor"]):
        capsys.readouterr()
        assert lifecycle_cli("--model", MODEL, *command) == 0, (command, capsys.readouterr())
    out = capsys.readouterr().out
    assert "no problems found" in out and "artifact(s)" in out, out

    # One object deleted on the store: named by its URI (s3://, not s3:/), exit 1.
    archive = next(key for key in stored if key.endswith(".zip"))
    s3.delete_object(Bucket=BUCKET, Key=archive)
    fsspec.filesystem("s3").invalidate_cache()  # a new `lifecycle` process starts without it
    capsys.readouterr()
    assert lifecycle_cli("doctor") == 1
    out = capsys.readouterr().out
    assert case("team deployment", "object deleted from an S3 artifact root").shown_in(out), out
    assert f"s3://{BUCKET}/{archive}" in out, out
    assert "s3:/" + BUCKET not in out


def test_a_data_version_is_pushed_to_and_read_back_from_an_s3_dvc_remote(
    s3_endpoint: str, registry_copy: Registry, sample_dir: Path
) -> None:
    """`dvc push` to an S3 remote works as locked (dvc-s3), and a version whose bytes are only
    on that remote (no local cache, no other remote) is read through DVC and checked by md5."""
    repo = registry_copy.repo
    dvc = [str(Path(sys.executable).with_name("dvc"))]
    url = f"s3://{BUCKET}/dvc"
    subprocess.run([*dvc, "remote", "add", "-f", "-d", "team", url], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qam", "data on S3"], cwd=repo, check=True)
    content = (sample_dir / "versions" / "data-v2" / "breast_cancer.csv").read_bytes()
    content += content.rstrip(b"\n").rsplit(b"\n", 1)[1] + b"\n"  # one row more: new bytes
    md5 = registry_copy.publish("data-v3", content)  # pushed to the default remote: S3

    stored = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=BUCKET)
    assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in [o["Key"] for o in stored["Contents"]]
    shutil.rmtree(repo / ".dvc" / "cache")  # only the S3 remote holds the bytes now
    shutil.rmtree(registry_copy.remote)
    with registry_copy.resource().open("data-v3") as (resolved, stream):
        read = stream.read()
        stream.verify()
    assert (resolved.md5, read) == (md5, content)


@pytest.mark.slow
def test_a_version_trained_onto_s3_is_reproduced_identically(
    s3_endpoint: str, demo_registry: Registry, tmp_path: Path
) -> None:
    """`lifecycle reproduce` of a version whose artifacts are on the S3 endpoint: the lineage
    recorded there is re-run in a scratch instance and matches, and nothing is added to the
    deployment's store (the bucket holds the same objects before and after)."""
    from tests.test_reproduce import Project, _elements, _report

    root = f"s3://{BUCKET}/artifacts"

    class OnS3(Project):
        def env(self, home: Path) -> dict[str, str]:
            return super().env(home) | {"LIFECYCLE_ARTIFACT_ROOT": root}

    project = OnS3(committed_project_copy(tmp_path / "repo"), demo_registry, tmp_path / "state")
    home = tmp_path / "home"
    project.train(home)  # `dagster asset materialize` from the committed copy, onto S3
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)

    def objects() -> list[str]:
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))

    before = objects()
    assert any(key.startswith("artifacts/") and key.endswith(".zip") for key in before), before

    done = project.lifecycle(home, "reproduce", "data-v1")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(done)
    assert (report["method"], report["verdict"]) == ("current", "identical")
    elements = _elements(report)
    for name in ("data_md5", "fingerprint.state", "fingerprint.predictions", "config_hash"):
        assert elements[name]["recorded"] == elements[name]["reproduced"], name
    assert objects() == before  # the reproduction ran in its own scratch root, not the bucket

"""package_verifies checks what the store holds, with the key verifiers trust, not the signer's.

Signing already verifies a fresh folder with the signer's own pair; these tests show the check
catches what that cannot: a signer configured with another key, and bytes that changed on their
way into the store. `lifecycle verify VERSION` repeats the same verification later.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline import governance
from lifecycle_pipeline.cli import main
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.lineage.query import check_results, latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.signing import PackageSigner, ensure_dev_key, public_key_id
from tests.conftest import SAMPLE, SAMPLE_MODEL, Pipeline, Registry, dagster_home, scratch_pipeline

pytestmark = pytest.mark.xdist_group("package_check")

CHECK = f"{SAMPLE_MODEL.asset('deployment_package')}:package_verifies"
PACKAGE = SAMPLE["deployment_package"]


class CorruptingStore(ArtifactStore):
    """A storage layer that flips one bit of every zip it is given (bit rot, a bad proxy)."""

    def write(
        self,
        asset: str,
        partition: str | None,
        payload: bytes | memoryview,
        name: str | None = None,
    ) -> tuple[str, str]:
        if name and name.endswith(".zip"):
            data = bytes(payload)
            payload = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return super().write(asset, partition, payload, name)


def _key_pair(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir()
    private, public = folder / "other.pem", folder / "other.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def verified(
    demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """data-v1 packaged into an instance in a real DAGSTER_HOME, which the CLI can open."""
    base = tmp_path_factory.mktemp("verified")
    with dg.DagsterInstance.from_config(str(dagster_home(base / "dagster_home"))) as instance:
        defs = build_definitions(
            model=SAMPLE_MODEL,
            registry=demo_registry.resource(),
            artifact_store=ArtifactStore(root=str(base / "artifacts")),
        )
        pipeline = Pipeline(defs=defs, instance=instance, artifacts=base / "artifacts")
        assert pipeline.run("data-v1").success
        yield pipeline


def test_the_stored_package_is_verified_with_the_trusted_key_in_the_same_run(
    verified: Pipeline,
) -> None:
    record = latest(verified.instance, PACKAGE, "data-v1")
    assert record is not None
    check = check_results(verified.instance, record.run_id)[CHECK]
    assert check.passed, check.description
    assert check.metadata["run_id"] == record.run_id  # this run's materialization
    assert check.metadata["archive"] == metadata_values(record)["artifact/archive"]
    assert check.metadata["trusted_public_key_id"] == public_key_id(ensure_dev_key()[1])
    assert "signature model.sig verifies" in check.description
    # The model loads with exactly the reviewed types its training recorded, and every golden
    # row passes the package's own input validation and reproduces golden_outputs.parquet.
    assert "model.skops loads with exactly the reviewed types ['sklearn.tree._tree.Tree']" in (
        check.description
    )
    assert "golden rows pass input validation and reproduce golden_outputs.parquet" in (
        check.description
    )


def test_a_package_signed_with_a_key_nobody_trusts_fails_the_check(
    demo_registry: Registry, tmp_path: Path
) -> None:
    private, public = _key_pair(tmp_path / "keys")
    signer = PackageSigner(private_key_path=str(private), public_key_path=str(public))
    with scratch_pipeline(demo_registry, tmp_path, signer=signer) as pipeline:
        instance = pipeline.instance
        result = pipeline.run("data-v1")
        assert not result.success  # a blocking check failed
        check = check_results(instance, result.run_id)[CHECK]
        assert not check.passed
        assert "does not verify with" in check.description
        assert str(ensure_dev_key()[1]) in check.description  # the trusted key, named
        assert check.metadata["trusted_public_key_id"] != public_key_id(public)
        # Governance reads the same verdict: such a package can never be promoted.
        chosen = governance.candidate(instance, SAMPLE_MODEL, "data-v1", ensure_dev_key()[1])
        assert any(m.startswith(f"{CHECK}: FAILED in run") for m in chosen.missing), chosen.missing


def test_bytes_corrupted_on_their_way_into_the_store_fail_the_check(
    demo_registry: Registry, tmp_path: Path
) -> None:
    with scratch_pipeline(demo_registry, tmp_path, store=CorruptingStore) as pipeline:
        instance = pipeline.instance
        result = pipeline.run("data-v1")
        assert not result.success
        check = check_results(instance, result.run_id)[CHECK]
        archive = metadata_values(latest(instance, PACKAGE, "data-v1"))
        assert not check.passed
        assert f"Artifact archive {archive['artifact/archive']} does not hold" in check.description


@pytest.mark.parametrize("where", ["archive", "folder"])
def test_stored_bytes_changed_later_fail_lifecycle_verify(
    verified: Pipeline,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On-call re-verifies a version as the store holds it now: exit 1, the file named."""
    monkeypatch.setenv("DAGSTER_HOME", str(verified.instance.root_directory))
    # --model sets LIFECYCLE_MODEL for the rest of the process; monkeypatch restores it after.
    monkeypatch.setenv("LIFECYCLE_MODEL", SAMPLE_MODEL.name)
    verify = ["--model", SAMPLE_MODEL.name, "verify", "data-v1"]
    metadata = metadata_values(latest(verified.instance, PACKAGE, "data-v1"))
    target = (
        Path(metadata["artifact/archive"])
        if where == "archive"
        else Path(metadata["artifact/uri"]) / "manifest.json"
    )
    original = target.read_bytes()
    assert main(verify) == 0, capsys.readouterr().err
    assert "the zip holds exactly them" in capsys.readouterr().out
    try:
        target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        assert main(verify) == 1
        err = capsys.readouterr().err
        assert "stored package:" in err and str(target) in err and "NOT VERIFIED" in err
    finally:
        target.write_bytes(original)

"""The Kubernetes files would run, as far as can be shown without a cluster or helm.

There is no cluster and no helm binary here, and the Dagster chart's templates cannot be
rendered offline. What can be built is built with the code that builds it in a cluster: the
run pod comes from dagster-k8s's own K8sRunLauncher and ``construct_dagster_k8s_job`` fed the
values' launcher config. That pod and every manifest this repository ships are validated
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), and
the invariants a schema cannot see are checked: the non-root user can read the keys, every pod
has every variable and volume the code needs, the run pod's resources are the launcher's.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes_validate
import pytest
import yaml

from tests.conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCS = PROJECT_ROOT / "docs" / "deployment.md"
KUBERNETES = "1.30.0"  # the oldest minor still supported by the major clouds
IMAGE = "registry.example.com/ml/lifecycle-pipeline:0.1.0"
RELEASE = "lifecycle"  # `helm upgrade --install lifecycle ...` in docs/deployment.md
# Every key the code reads by path from the Secret, and the variables every pod must carry.
KEY_VARIABLES = ("LIFECYCLE_SIGNING_KEY", "LIFECYCLE_SIGNING_PUBLIC_KEY", "LIFECYCLE_AUDIT_KEY")


def _values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "values.yaml").read_text(encoding="utf-8"))
    return loaded


def _deployment() -> dict[str, Any]:
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    return dict(deployment)


def _launcher_values() -> dict[str, Any]:
    launcher: dict[str, Any] = _values()["runLauncher"]["config"]["k8sRunLauncher"]
    return launcher


def _manifests() -> list[dict[str, Any]]:
    documents = []
    for name in ("storage.yaml", "governance-job.yaml"):
        text = (K8S / name).read_text(encoding="utf-8")
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def _manifest(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        doc
        for doc in _manifests()
        if doc["kind"] == kind
        and name in (doc["metadata"].get("name"), doc["metadata"].get("generateName"))
    ]
    return found


def _image_uid() -> int:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"useradd --uid (\d+)", dockerfile)
    assert found is not None, "the Dockerfile creates no user with a fixed uid"
    return int(found.group(1))


def _chart_container_context(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the chart's `dagsterUserDeployments.k8sContainerContext` helper (chart 1.13) passes
    to the code server as its container context when includeConfigInLaunchedRuns is on."""
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-dagster-{deployment['name']}-user-env"],
        "env_secrets": [secret["name"] for secret in deployment.get("envSecrets", [])],
        "volume_mounts": deployment.get("volumeMounts", []),
        "volumes": deployment.get("volumes", []),
        "namespace": "lifecycle",
        "service_account_name": f"{RELEASE}-dagster-user-deployments",
        "env": deployment.get("env", []),
    }
    if deployment.get("resources"):
        k8s["resources"] = deployment["resources"]
    return {"k8s": k8s}


def _run_launcher(tmp_path: Path) -> Any:
    """The K8sRunLauncher the chart configures from the values (its instance ConfigMap's
    run_launcher block), with a kubeconfig that names a cluster it never contacts."""
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}
    user = {"name": "none", "user": {"token": "unused"}}
    context = {"name": "none", "context": {"cluster": "none", "user": "none"}}
    kubeconfig.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user],
             "contexts": [context], "current-context": "none"}
        ),
        encoding="utf-8",
    )  # fmt: skip
    return K8sRunLauncher(kubeconfig_file=str(kubeconfig), **_launcher_config())


def _launcher_config() -> dict[str, Any]:
    """The run_launcher config the chart writes into the instance from the values (its
    templates/helpers/instance/_run-launcher.tpl: runK8sConfig.containerConfig becomes
    run_k8s_config.container_config, podSpecConfig pod_spec_config, the names by release)."""
    values = _launcher_values()
    run_k8s_config = values.get("runK8sConfig", {})
    return {
        "instance_config_map": f"{RELEASE}-dagster-instance",
        "service_account_name": f"{RELEASE}-dagster",
        "postgres_password_secret": _values()["global"]["postgresqlSecretName"],
        "dagster_home": "/opt/dagster/dagster_home",
        "load_incluster_config": False,
        "job_namespace": "lifecycle",
        "env_config_maps": [f"{RELEASE}-dagster-pipeline-env", *values.get("envConfigMaps", [])],
        "env_secrets": [secret["name"] for secret in values.get("envSecrets", [])],
        "run_k8s_config": {
            "container_config": run_k8s_config.get("containerConfig", {}),
            "pod_spec_config": run_k8s_config.get("podSpecConfig", {}),
        },
    }


def _run_pod_job(tmp_path: Path, container_context: dict[str, Any] | None) -> dict[str, Any]:
    """The Job the launcher would create for a run of the lifecycle job, as Kubernetes JSON."""
    import kubernetes
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster_k8s.job import construct_dagster_k8s_job, get_job_name_from_run_id

    launcher = _run_launcher(tmp_path)
    origin = JobPythonOrigin(
        "breast_cancer_lifecycle",
        RepositoryPythonOrigin(
            executable_path="/opt/lifecycle/.venv/bin/python",
            code_pointer=ModuleCodePointer("lifecycle_pipeline.definitions", "defs", None),
            container_image=IMAGE,
            container_context=container_context,
        ),
    )
    run = dg.DagsterRun(
        job_name="breast_cancer_lifecycle",
        run_id="0123abcd-0000-4000-8000-000000000000",
        job_code_origin=origin,
        tags={"lifecycle/model": "breast_cancer"},
    )
    context = launcher.get_container_context_for_run(run)
    job_name = get_job_name_from_run_id(run.run_id)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=IMAGE, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"],
        job_name=job_name,
        pod_name=job_name,
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/run-id": run.run_id},
    )
    serialized: dict[str, Any] = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    return json.loads(json.dumps(serialized))


def _pod_specs(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod this deployment starts that runs the project's code, as a pod spec."""
    deployment = _deployment()
    yield "code server", {
        "securityContext": deployment["podSecurityContext"],
        "volumes": deployment["volumes"],
        "containers": [
            {"name": "dagster-user-deployments", "image": IMAGE, "env": deployment["env"],
             "envFrom": [{"secretRef": s} for s in deployment["envSecrets"]],
             "volumeMounts": deployment["volumeMounts"], "resources": deployment["resources"]}
        ],
    }  # fmt: skip
    yield "run pod", _run_pod_job(tmp_path, None)["spec"]["template"]["spec"]
    yield "governance job", _manifest("Job", "lifecycle-governance-")["spec"]["template"]["spec"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


def _env_secrets(container: dict[str, Any]) -> set[str]:
    return {
        source["secretRef"]["name"]
        for source in container.get("envFrom") or []
        if source.get("secretRef")
    }


def _documented_secret(name: str) -> list[str]:
    """The words of the `kubectl create secret generic NAME` command in the deployment guide."""
    text = re.sub(r"\\\n\s*", " ", DOCS.read_text(encoding="utf-8"))
    commands = [
        shlex.split(line.strip())
        for line in text.splitlines()
        if f"create secret generic {name} " in line + " "
    ]
    assert len(commands) == 1, f"docs/deployment.md should create the Secret {name} once"
    return commands[0]


@pytest.mark.parametrize("index", range(len(_manifests())))
def test_shipped_manifests_are_valid_kubernetes(index: int) -> None:
    document = _manifests()[index]
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_run_pod_built_by_dagster_k8s_is_valid_and_has_what_the_code_needs(
    tmp_path: Path,
) -> None:
    job = _run_pod_job(tmp_path, None)
    kubernetes_validate.validate(job, KUBERNETES, strict=True)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    env = _env(container)
    for item in _deployment()["env"]:  # every variable the code server has, same value
        assert env.get(item["name"]) == item["value"], item["name"]
    # LIFECYCLE_POSTGRES_URL and the object-store credentials arrive from Secrets.
    assert _env_secrets(container) >= {"lifecycle-postgres-url", "lifecycle-object-store"}
    # The launcher's resources hold: nothing from the code location replaces them.
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    expected = {m["name"]: m["mountPath"] for m in _deployment()["volumeMounts"]}
    assert mounts.items() >= expected.items()
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == _deployment()["podSecurityContext"]


def test_the_code_servers_resources_would_replace_the_run_pods_if_config_were_included(
    tmp_path: Path,
) -> None:
    """Why includeConfigInLaunchedRuns is off: dagster-k8s merges the code location's container
    context over the launcher's, so the code server's requests would become every run's."""
    deployment = _deployment()
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is False
    included = _run_pod_job(tmp_path, _chart_container_context(deployment))
    (container,) = included["spec"]["template"]["spec"]["containers"]
    launcher = _launcher_values()["runK8sConfig"]["containerConfig"]["resources"]
    assert deployment["resources"] != launcher
    assert container["resources"] == deployment["resources"]


def test_every_pod_runs_as_the_image_user_and_can_read_its_keys(tmp_path: Path) -> None:
    uid = _image_uid()
    for name, spec in [*_pod_specs(tmp_path), ("registry sync", _cronjob_pod())]:
        security = spec["securityContext"]
        assert security["runAsUser"] == uid and security["runAsNonRoot"] is True, name
        # Secret files are root-owned; the group (fsGroup) is what lets the user read them.
        assert security["fsGroup"] == uid, name
        for volume in spec["volumes"]:
            for kind in ("secret", "configMap"):
                if kind in volume:
                    mode = volume[kind].get("defaultMode", 0o644)
                    assert mode & 0o040, f"{name}: {volume['name']} is not group-readable"
                    if kind == "secret":
                        assert not mode & 0o007, f"{name}: {volume['name']} is world-readable"


def test_every_pod_has_the_keys_audit_volume_registry_and_database(tmp_path: Path) -> None:
    for name, spec in _pod_specs(tmp_path):
        container = spec["containers"][0]
        env = _env(container)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for variable in KEY_VARIABLES:
            assert Path(env[variable]).parent == Path(mounts["signing-key"]), (name, variable)
        assert volumes["signing-key"]["secret"]["secretName"] == "lifecycle-signing-key"
        assert Path(env["LIFECYCLE_AUDIT_DIR"]).is_relative_to(mounts["audit"]), name
        assert volumes["audit"]["persistentVolumeClaim"]["claimName"] == "lifecycle-audit"
        assert Path(env["LIFECYCLE_REGISTRY_URL"]).is_relative_to(mounts["registry"]), name
        claim = volumes["registry"]["persistentVolumeClaim"]["claimName"]
        assert claim == "lifecycle-registry", name
        assert "lifecycle-postgres-url" in _env_secrets(container), name


def test_the_documented_secrets_hold_every_key_and_url_the_pods_read() -> None:
    words = _documented_secret("lifecycle-signing-key")
    files = {Path(w.split("=", 1)[1]).name for w in words if w.startswith("--from-file=")}
    env = {item["name"]: item["value"] for item in _deployment()["env"]}
    assert {Path(env[variable]).name for variable in KEY_VARIABLES} <= files
    words = _documented_secret("lifecycle-postgres-url")
    assert any(w.startswith("--from-literal=LIFECYCLE_POSTGRES_URL=") for w in words)
    words = _documented_secret("lifecycle-git-credentials")
    assert any(w.startswith("--from-file=git-credentials=") for w in words)
    # The file the CronJob's credential helper reads is the key the Secret is created with.
    values = _env(_cronjob_pod()["containers"][0])
    assert values["GIT_CONFIG_VALUE_0"].endswith("/git-credentials")


def _cronjob_pod() -> dict[str, Any]:
    cronjob = _manifest("CronJob", "lifecycle-registry-sync")
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def test_the_registry_clone_is_where_the_pods_read_it_and_kept_fresh() -> None:
    pod = _cronjob_pod()
    (container,) = pod["containers"]
    env = _env(container)
    values_env = {item["name"]: item["value"] for item in _deployment()["env"]}
    assert env["REGISTRY_CLONE"] == values_env["LIFECYCLE_REGISTRY_URL"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["registry"] == next(
        m["mountPath"] for m in _deployment()["volumeMounts"] if m["name"] == "registry"
    )
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
    }
    assert claims["registry"] == "lifecycle-registry"
    script = container["args"][0]
    assert "fetch --tags" in script and "git clone" in script
    assert env["GIT_CONFIG_VALUE_0"].split("--file=")[1].startswith(mounts["git-credentials"])
    # Both volumes the pods mount are created, shared across nodes.
    for claim in ("lifecycle-audit", "lifecycle-registry"):
        assert _manifest("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_code_rejects_a_remote_registry_url_for_listing_tags() -> None:
    """Why the pods point LIFECYCLE_REGISTRY_URL at the clone, not at the https URL."""
    from lifecycle_pipeline.resources.registry import DataRegistry, RegistryError

    remote = _env(_cronjob_pod()["containers"][0])["REGISTRY_SOURCE"]
    with pytest.raises(RegistryError, match="needs a local clone"):
        DataRegistry(url=remote).versions()


def test_the_governance_job_has_the_code_servers_environment_and_mounts() -> None:
    deployment = _deployment()
    spec = _manifest("Job", "lifecycle-governance-")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["env"] == deployment["env"]
    assert container["volumeMounts"] == deployment["volumeMounts"]
    assert spec["volumes"] == deployment["volumes"]
    assert _env_secrets(container) == {s["name"] for s in deployment["envSecrets"]}
    assert spec["securityContext"] == deployment["podSecurityContext"]
    assert container["command"] == ["lifecycle"]
    # Its example arguments are a command the CLI accepts.
    from lifecycle_pipeline.cli import build_parser

    build_parser().parse_args(container["args"])


def test_managed_postgres_parameters_reach_the_connection_string() -> None:
    from dagster_postgres.utils import pg_url_from_config

    postgres = _values()["postgresql"]
    params = postgres["postgresqlParams"]
    assert params["sslmode"] in {"require", "verify-ca", "verify-full"}
    # The chart writes these as postgres_db.params (its instance/_postgresql.tpl).
    url = pg_url_from_config(
        {
            "postgres_db": {
                "username": postgres["postgresqlUsername"],
                "password": "unused",
                "hostname": postgres["postgresqlHost"],
                "db_name": postgres["postgresqlDatabase"],
                "port": postgres["service"]["port"],
                "params": params,
            }
        }
    )
    assert f"sslmode={params['sslmode']}" in url and "connect_timeout=10" in url


def test_the_chart_version_is_pinned_to_the_locked_dagster() -> None:
    version = dg.__version__
    for text in ((K8S / "values.yaml").read_text("utf-8"), DOCS.read_text("utf-8")):
        pins = re.findall(
            r"helm upgrade --install .*?--version (\S+)", re.sub(r"\\\n\s*", " ", text)
        )
        assert pins and set(pins) == {version}


def test_the_launcher_config_passes_dagster_k8s_own_config_schema() -> None:
    """The constructor takes anything; the instance's config schema is what the daemon checks."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    checked = process_config(K8sRunLauncher.config_type(), _launcher_config())
    assert checked.success, checked.errors
    wrong = _launcher_config()
    wrong["run_k8s_config"]["containerConfig"] = wrong["run_k8s_config"].pop("container_config")
    assert not process_config(K8sRunLauncher.config_type(), wrong).success


def test_the_code_server_pod_from_the_values_is_valid_kubernetes(tmp_path: Path) -> None:
    """The parts of the user deployment's pod the values supply, placed as the chart's
    deployment-user.yaml template places them, validated as a Pod."""
    name, spec = next(_pod_specs(tmp_path))
    assert name == "code server"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "code-server"}, "spec": spec}
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    broken = json.loads(json.dumps(pod))
    broken["spec"]["securityContext"]["fsgroup"] = 10001  # a misspelt field is caught
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)

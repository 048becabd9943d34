"""The Dagster UI answers lineage questions: a real browser against a real webserver.

Chromium comes from the system (Debian's `chromium`, or LIFECYCLE_CHROMIUM); Playwright
drives it headless. Without a browser these tests are skipped with the reason, except in CI
(`CI=true`), where a missing browser is a failure: `.ci/run` installs one.
Screenshots go to a temporary folder, or to docs/img/ with UPDATE_SCREENSHOTS=1 (docs/ui.md
shows those).

The webserver serves a committed copy of the project, and the sample's data-v1 is trained by
that copy's code, as a deployment trains: its record names a clean commit, which is what lets
on-call reproduce it from the UI (whatever uncommitted edits the tree the tests run from has).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lifecycle_pipeline.declaration import load_declaration
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.governance import MODEL_TAG
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.registry import DataRegistry
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    committed_project_copy,
    free_port,
    reproduction_records,
    train_committed,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui")]

SNAPSHOT = PROJECT_ROOT / "tests" / "snapshots" / "asset_graph.json"
OTHER_MODEL = load_declaration(PROJECT_ROOT / "models" / "diabetes")
BC = SAMPLE_MODEL.name
REPRODUCE = SAMPLE_MODEL.scoped("reproduce")
# Runs launched from the UI start at once. `make ui` runs a daemon for that; here a daemon
# would also tick the models' default-on sensors while the tests read the instance.
INSTANCE_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
"""


def chromium() -> str | None:
    configured = os.environ.get("LIFECYCLE_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


@dataclass
class Served:
    url: str
    pipeline: Pipeline  # the sample model's
    other: Pipeline  # the second model's, in the same instance
    shots: Path
    project: Path  # the committed project copy the webserver serves
    env: dict[str, str]  # the served deployment's environment (its LIFECYCLE_HOME, registry)


# Session scope: xdist may interleave other modules' tests, which would tear a module
# fixture down and rebuild it; the browser stays module-scoped (see ``page``).
@pytest.fixture(scope="session")
def served(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Both demo models' versions and batches in one real DAGSTER_HOME, shown by
    dagster-webserver loading the models folder of a committed copy of the project, as
    `make ui` does. The sample's data-v1 is trained by that copy in its own process (a clean
    commit, reproducible from the UI); the rest in this process, which is faster."""
    base = tmp_path_factory.mktemp("ui")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML, encoding="utf-8")
    artifacts = base / "artifacts"
    project = committed_project_copy(base / "project")
    shutil.copy(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(base / "state"),  # its own audit logs and reports
        "LIFECYCLE_REGISTRY_URL": str(demo_registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(artifacts),
        "PYTHONPATH": str(project),  # the copy's code, not the working tree's
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(
            models=[SAMPLE_MODEL, OTHER_MODEL],
            registry=DataRegistry(url=str(demo_registry.repo)),  # both models' tags
            artifact_store=ArtifactStore(root=str(artifacts)),
        )
        pipeline = Pipeline(defs=defs, instance=instance, artifacts=artifacts, model=SAMPLE_MODEL)
        other = Pipeline(defs=defs, instance=instance, artifacts=artifacts, model=OTHER_MODEL)
        train_committed(project, env, "data-v1")
        assert pipeline.run("data-v2").success
        for batch in ("batch-001", "batch-002"):
            assert pipeline.drift(batch).success
        assert other.run("diabetes-v1").success
        assert other.drift("diabetes-batch-002").success
        port = free_port()
        log = (base / "webserver.log").open("wb")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1",
             "-p", str(port), "-w", str(project / "workspace.yaml")],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                        break
                except OSError:
                    assert server.poll() is None, (base / "webserver.log").read_text()
                    assert time.monotonic() < deadline, "webserver did not start"
                    time.sleep(1)
            shots = (
                PROJECT_ROOT / "docs" / "img"
                if os.environ.get("UPDATE_SCREENSHOTS")
                else base / "screenshots"
            )
            shots.mkdir(parents=True, exist_ok=True)
            yield Served(
                url=url, pipeline=pipeline, other=other, shots=shots, project=project, env=env
            )
        finally:
            server.terminate()
            server.wait(timeout=60)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Skips (or, in CI, fails) before anything expensive is built."""
    executable = chromium()
    if executable is None:
        reason = "no Chromium found (apt-get install chromium, or set LIFECYCLE_CHROMIUM)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"UI tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return executable


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(chromium_path: str, served: Served, browser: Any) -> Iterator[Any]:
    """``served`` first: its pipeline runs must not happen inside Playwright's event loop."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _open(page: Any, served: Served, path: str) -> None:
    page.goto(served.url + path)
    # A fresh instance greets with a newsletter dialog; it covers the page until skipped.
    skip = page.get_by_role("button", name="Skip")
    with contextlib.suppress(Exception):  # no dialog: Playwright's TimeoutError
        skip.click(timeout=4000)


def _graph_edges(page: Any) -> set[str]:
    """Distinct edge paths (arrows); a hovered node draws its edges a second time."""
    paths = page.locator("svg path").evaluate_all(
        "nodes => nodes.map(n => [n.getAttribute('d'), n.getAttribute('marker-end') || ''])"
    )
    return {d for d, marker in paths if marker.startswith("url(#arrow")}


def _stage(key: str) -> str:
    """The node label the UI shows for an asset key: its last part (the stage)."""
    return key.rsplit("/", 1)[-1]


def test_asset_graph_shows_both_models_as_groups_with_every_asset_and_edge(
    page: Any, served: Served
) -> None:
    expected = json.loads(SNAPSHOT.read_text())["assets"]
    groups = sorted({asset["group"] for asset in expected.values()})
    assert groups == [BC, OTHER_MODEL.name]  # one group per model
    expanded = ",".join(f"global@global:{group}" for group in groups)  # every group open
    _open(page, served, "/asset-groups?" + urllib.parse.urlencode({"expanded": expanded}))
    for group in groups:
        page.get_by_text(group, exact=True).first.wait_for()
    stages = {_stage(key) for key in expected}
    for stage in stages:
        page.get_by_text(stage, exact=True).nth(len(groups) - 1).wait_for()
        assert page.get_by_text(stage, exact=True).count() == len(groups), stage
    edges = sum(len(asset["deps"]) for asset in expected.values())
    deadline = time.monotonic() + 20
    while len(_graph_edges(page)) != edges and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert len(_graph_edges(page)) == edges
    page.screenshot(path=str(served.shots / "asset-graph.png"))


def test_partitions_view_lists_data_versions_with_status(page: Any, served: Served) -> None:
    _open(page, served, f"/assets/{BC}/data_snapshot?view=partitions")
    page.get_by_text("Materialized (2)").wait_for()
    for key in ("data-v1", "data-v2"):
        page.get_by_text(key, exact=True).first.wait_for()
    assert page.get_by_text("Failed (0)").count() == 1
    # The other model's partitions are its own.
    _open(page, served, f"/assets/{OTHER_MODEL.name}/data_snapshot?view=partitions")
    page.get_by_text("Materialized (1)").wait_for()
    page.get_by_text("diabetes-v1", exact=True).first.wait_for()
    assert page.get_by_text("data-v1", exact=True).count() == 0


def test_events_tab_lists_materializations_without_per_load_observations(
    page: Any, served: Served
) -> None:
    """features is loaded by three downstream steps per version; none of those loads is an
    event of its own (what was loaded is recorded on the downstream materialization)."""
    instance = served.pipeline.instance
    key = SAMPLE_MODEL.key("features")
    made = instance.fetch_materializations(key, limit=100).records
    assert len(made) == 2  # data-v1, data-v2
    observed = instance.fetch_observations(key, limit=100).records
    assert observed == []
    _open(page, served, f"/assets/{BC}/features?view=events")
    page.get_by_text("materialized in run", exact=False).first.wait_for()  # the newest, opened
    page.wait_for_timeout(1000)  # the list renders with the details
    body = page.locator("body").inner_text()
    # The event list: one entry (time, partition) per event, exactly the materializations.
    listed = [line for line in body.splitlines() if line.strip() in ("data-v1", "data-v2")]
    assert sorted(listed) == sorted(str(r.partition_key) for r in made)
    assert "observed in run" not in body
    page.screenshot(path=str(served.shots / "events.png"))


def test_evaluation_page_shows_metrics_and_check_verdicts(page: Any, served: Served) -> None:
    recorded = metadata_values(
        latest(served.pipeline.instance, SAMPLE_MODEL.key("evaluation"), "data-v2")
    )
    _open(page, served, f"/assets/{BC}/evaluation")
    for metric in ("metric/accuracy", "metric/roc_auc", "metric/f1", "metric/brier"):
        row = page.locator("tr", has_text=metric).first
        row.wait_for()
        assert str(recorded[metric]) in row.inner_text()
    page.get_by_text("Source code", exact=True).first.wait_for()  # the code reference
    assert page.get_by_text("evaluation.py", exact=False).count() >= 1
    page.screenshot(path=str(served.shots / "evaluation.png"))
    _open(page, served, f"/assets/{BC}/evaluation?view=checks")
    for gate in ("gate_roc_auc", "gate_f1", "gate_recall", "gate_brier"):
        page.get_by_text(gate, exact=True).first.wait_for()
    assert page.get_by_text("Succeeded", exact=True).count() >= 4
    page.get_by_text("This is a blocking asset check.").wait_for()


def test_model_card_markdown_is_rendered(page: Any, served: Served) -> None:
    _open(page, served, f"/assets/{BC}/model_card")
    row = page.locator("tr", has_text="model_card").filter(has_text="Show Markdown").first
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    heading = dialog.get_by_role("heading", level=1)
    heading.first.wait_for()
    assert "Model card" in heading.first.inner_text()
    sections = dialog.get_by_role("heading", level=2).all_inner_texts()
    assert {"Model details", "Intended use", "Metrics"} <= {s.strip() for s in sections}
    heading.first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # the dialog fades in
    page.screenshot(path=str(served.shots / "model-card.png"))


def test_drift_report_link_and_share_plot(page: Any, served: Served) -> None:
    recorded = metadata_values(
        latest(served.pipeline.instance, SAMPLE_MODEL.key("drift_monitor"), "batch-002")
    )
    _open(page, served, f"/assets/{BC}/drift_monitor")
    entry = page.locator("tr", has_text="artifact/entry").first
    entry.wait_for()
    assert str(recorded["artifact/entry"]) in entry.inner_text()
    assert str(recorded["artifact/entry"]).endswith("report.html")
    page.get_by_role("button", name="Plots").first.click()
    title = page.get_by_text("drift/share", exact=True).first
    title.scroll_into_view_if_needed()
    # The chart is the one canvas in the smallest block around its title.
    canvases = title.evaluate(
        "el => { let n = el; while (n && !n.querySelector('canvas')) n = n.parentElement;"
        " return n ? n.querySelectorAll('canvas').length : 0; }"
    )
    assert canvases == 1
    page.wait_for_timeout(500)
    page.screenshot(path=str(served.shots / "drift.png"))


def test_lineage_of_a_package_reaches_the_data_snapshot(page: Any, served: Served) -> None:
    package = f"{BC}/deployment_package"
    _open(page, served, f"/assets/{package}?view=lineage&lineageScope=upstream&lineageDepth=6")
    assets = json.loads(SNAPSHOT.read_text())["assets"]
    upstream: set[str] = set()
    frontier = [package]
    while frontier:  # the recorded graph's transitive upstream of the package
        for dep in assets[frontier.pop()]["deps"]:
            if dep not in upstream:
                upstream.add(dep)
                frontier.append(dep)
    assert {_stage(k) for k in upstream} == {
        "model_card", "evaluation", "trained_model", "features", "data_snapshot"
    }  # fmt: skip
    assert all(k.startswith(f"{BC}/") for k in upstream)  # never another model's asset
    for name in (package, *upstream):
        page.get_by_text(_stage(name), exact=True).last.wait_for()
    for name in upstream:  # drawn once: no other model's asset of the same stage
        assert page.get_by_text(_stage(name), exact=True).count() == 1, name
    edges = sum(len(assets[name]["deps"]) for name in (package, *upstream))
    deadline = time.monotonic() + 20
    while len(_graph_edges(page)) != edges and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert len(_graph_edges(page)) == edges  # every dependency drawn, no other
    for outside in {"drift_monitor", "production_model"}:  # downstream, monitoring
        assert page.get_by_text(outside, exact=True).count() == 0, outside
    page.screenshot(path=str(served.shots / "lineage.png"))


def test_one_partition_is_followed_from_package_to_data_by_recorded_references(
    page: Any, served: Served
) -> None:
    """What docs/ui.md walks through: each stage's page names the exact upstream it used."""
    instance = served.pipeline.instance
    package = metadata_values(latest(instance, SAMPLE_MODEL.key("deployment_package"), "data-v1"))
    trained = f"upstream/{BC}/trained_model"
    _open(page, served, f"/assets/{BC}/deployment_package?view=partitions&partition=data-v1")
    reference = page.locator("tr", has_text=trained).first
    reference.wait_for()
    for field in ("run_id", "sha256"):
        assert str(package[trained][field]) in reference.inner_text()
    page.locator("tr", has_text=f"upstream/{BC}/evaluation").first.scroll_into_view_if_needed()
    page.screenshot(path=str(served.shots / "package-partition.png"))
    features = metadata_values(latest(instance, SAMPLE_MODEL.key("features"), "data-v1"))
    snapshot = metadata_values(latest(instance, SAMPLE_MODEL.key("data_snapshot"), "data-v1"))
    assert features[f"upstream/{BC}/data_snapshot"]["sha256"] == snapshot["artifact/sha256"]
    _open(page, served, f"/assets/{BC}/data_snapshot?view=partitions&partition=data-v1")
    for key in ("dvc/md5", "git/commit"):
        row = page.locator("tr", has_text=key).first
        row.wait_for()
        assert str(snapshot[key]) in row.inner_text()


def test_on_call_reproduces_a_version_from_the_launchpad(
    page: Any, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runbook's step 3 without a terminal: launch `<model>_reproduce` with one line of
    config, and read the verdict and every element on the run page."""
    instance = served.pipeline.instance
    _open(page, served, f"/locations/lifecycle_pipeline/jobs/{REPRODUCE}/playground")
    # The Launchpad asks for the version before anything runs.
    page.get_by_text('Missing required config entry "version"', exact=False).wait_for()
    page.locator(".CodeMirror").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("version: data-v1")
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[-1]
    deadline = time.monotonic() + 300  # a reproduction re-materializes four stages
    while not (run := instance.get_run_by_id(run_id)) or not run.is_finished:
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        page.wait_for_timeout(1000)
    assert run.status == dg.DagsterRunStatus.SUCCESS, [
        e.message for e in instance.all_logs(run_id) if e.is_dagster_event
    ][-5:]
    assert run.tags[MODEL_TAG] == BC
    page.get_by_text("Success", exact=True).first.wait_for()
    # Only the step's output, whose metadata is the reproduction's evidence.
    page.get_by_placeholder("Filter…").fill("type:STEP_OUTPUT")
    page.get_by_role("button", name="View full message").click()
    dialog = page.get_by_role("dialog")
    verdict = dialog.locator("tr", has_text="verdict").first
    verdict.wait_for()
    assert verdict.inner_text().split() == ["verdict", "identical"]
    recorded = metadata_values(latest(instance, SAMPLE_MODEL.key("trained_model"), "data-v1"))
    combined = dialog.locator("tr", has_text="fingerprint.combined").last
    assert combined.inner_text().count(str(recorded["model/fingerprint"])) == 2  # both sides
    # The report it names is the one the audit log holds for this reproduction.
    monkeypatch.setenv("LIFECYCLE_HOME", served.env["LIFECYCLE_HOME"])  # its audit key
    newest = reproduction_records(Path(served.env["LIFECYCLE_HOME"]))[-1]
    assert dialog.get_by_text(newest.data["report"], exact=True).count() == 1
    page.wait_for_timeout(500)  # the dialog fades in
    page.screenshot(path=str(served.shots / "reproduce-run.png"))

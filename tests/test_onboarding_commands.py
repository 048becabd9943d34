"""Every command the project tells a new team to type works (issue 28, point 4).

The commands are read from the text people follow, not copied here: the shell blocks of the
README's "Add a model" section and docs/declaring-a-model.md's "Materialize a data version by
hand", and the ``$ `` lines of `lifecycle new-model`'s next steps. Placeholders (the documented
``loans`` model, its data file and target) are replaced by a generated model's, and each block
runs in a fresh copy of the project beside a real git + DVC registry, as a team would run it.
A command that stops working, or a text that drifts to one that does not, fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lifecycle_pipeline.registry_demo import init_registry
from tests.conftest import PROJECT_ROOT, committed_project_copy

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("onboarding_commands")]
BIN = Path(sys.executable).parent
README = PROJECT_ROOT / "README.md"
DECLARING_PAGE = PROJECT_ROOT / "docs" / "declaring-a-model.md"
# The sections whose every command the first test runs (tests/test_doc_commands.py counts them).
ONBOARDING_SECTIONS = (
    (README, "Add a model"),
    (DECLARING_PAGE, "Materialize a data version by hand"),
)


def team_frame(rows: int = 400, seed: int = 28) -> pd.DataFrame:
    """A binary table no code here has seen: an id column, a constant, mixed types, a string
    category, and a target that depends on two of the features."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50.0, 15.0, rows)
    tenure = rng.integers(0, 40, rows)
    region = rng.choice(["north", "south", "east"], rows)
    score = (income - 50.0) / 15.0 - (tenure - 20) / 12.0 + rng.normal(0.0, 0.5, rows)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in rng.permutation(rows)],
            "income": income,
            "tenure": tenure,
            "region": region,
            "source_system": ["crm"] * rows,
            "churned": (score > 0).astype(int),
        }
    )


def documented_blocks(*sections: tuple[Path, str]) -> list[str]:
    """The ``sh`` blocks of these (page, heading) sections, dedented, in order."""
    blocks: list[str] = []
    for page, heading in sections:
        text = page.read_text(encoding="utf-8")
        match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.MULTILINE)
        assert match, f"{page.name} has no section {heading!r}"
        level = len(match.group(1))
        rest = text[match.end() :]
        following = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
        section = rest[: following.start()] if following else rest
        for found in re.finditer(r"^( *)```sh\n(.*?)^\1```", section, re.MULTILINE | re.DOTALL):
            indent = len(found.group(1))
            lines = [line[indent:] for line in found.group(2).splitlines()]
            blocks.append("\n".join(lines))
    return blocks


def printed_commands(output: str) -> list[str]:
    """The commands `new-model` prints: each on a line of its own after ``$ ``."""
    return [line.strip()[2:] for line in output.splitlines() if line.strip().startswith("$ ")]


@dataclass
class Onboarding:
    base: Path
    project: Path
    registry: Path

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("LIFECYCLE_MODEL", "LIFECYCLE_REGISTRY_URL", "LIFECYCLE_MODELS_DIR")
        }
        home = self.base / "lifecycle_home"
        return {
            **env,
            "LIFECYCLE_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster_home"),
            "PYTHONPATH": str(self.project),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "GIT_AUTHOR_NAME": "Team",
            "GIT_AUTHOR_EMAIL": "team@example.org",
            "GIT_COMMITTER_NAME": "Team",
            "GIT_COMMITTER_EMAIL": "team@example.org",
            "LIFECYCLE_UV": str(PROJECT_ROOT / ".tools" / "bin" / "uv"),
        }

    def shell(self, script: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        """A block as a team pastes it: one shell, from the project folder (a ``cd`` holds for
        the lines after it), stopping at the first failing line (``-x`` shows which). Each line
        is checked itself: ``bash -e`` alone ignores a failure inside ``a && b``."""
        checked = "\n".join(
            f"{{ {line}\n}} || exit $?"
            for line in script.splitlines()
            if line.strip() and not line.strip().startswith("#")
        )
        return subprocess.run(
            ["bash", "-x", "-c", checked],
            cwd=self.project,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def onboarding(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Onboarding]:
    base = tmp_path_factory.mktemp("onboarding")
    project = committed_project_copy(base / "project")
    registry = base / "data-registry"  # the README's ../data-registry, beside the project
    init_registry(registry, base / "dvc-remote")
    subprocess.run(["git", "init", "-q", "--bare", str(base / "origin.git")], check=True)
    subprocess.run(
        ["git", "-C", str(registry), "remote", "add", "origin", str(base / "origin.git")],
        check=True,
    )
    home = base / "lifecycle_home" / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    yield Onboarding(base=base, project=project, registry=registry)


def _documented_command(line: str) -> str:
    """The documented placeholders replaced by the generated model's: model `loans` -> `churn`,
    target `defaulted` -> `churned`. `dg scaffold` is the other spelling of `new-model`'s step;
    it declares a second model, so that both spellings are proven."""
    if line.startswith("dg scaffold"):
        line = line.replace("loans.parquet", "churn.parquet").replace(" loans ", " churn_dg ")
    return line.replace("loans", "churn").replace("defaulted", "churned")


def test_the_documented_onboarding_and_manual_materialization_commands_run(
    onboarding: Onboarding,
) -> None:
    frame = team_frame()
    frame.to_parquet(onboarding.project / "churn.parquet", index=False)
    batch = frame.drop(columns=["churned"]).head(60)
    batch.to_parquet(onboarding.project / "churn-batch-001.parquet", index=False)
    blocks = documented_blocks(*ONBOARDING_SECTIONS)
    commands = [line for block in blocks for line in block.splitlines()]
    expected_commands = (
        "lifecycle new-model",
        "dg scaffold",
        "lifecycle check --model",
        "lifecycle materialize",
        "dagster job execute",
        "dagster asset materialize",
    )
    for expected in expected_commands:
        assert any(c.startswith(expected) for c in commands), (expected, commands)
    for block in blocks:
        script = "\n".join(_documented_command(line) for line in block.splitlines())
        done = onboarding.shell(script)
        assert done.returncode == 0, (
            f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    assert _packaged(onboarding, "churn", "churn-v1") >= 3  # materialize, job, asset selection
    declaration = (onboarding.project / "models" / "churn" / "defs.yaml").read_text()
    assert f"registry: {onboarding.registry}" in declaration
    assert "customer_id" in declaration.split("drop:")[1], "the id column is not proposed to drop"
    scaffolded = onboarding.project / "models" / "churn_dg" / "defs.yaml"
    assert declaration == scaffolded.read_text().replace("churn_dg", "churn")  # one proposal


def test_every_next_step_new_model_prints_runs(onboarding: Onboarding) -> None:
    """A second team model (CSV this time) in the same project and registry, following only
    what `new-model` printed."""
    frame = team_frame(seed=29)
    frame.to_csv(onboarding.project / "retention.csv", index=False)
    created = onboarding.shell(
        "lifecycle new-model retention --data retention.csv --target churned "
        f"--registry {shlex.quote(str(onboarding.registry))}"
    )
    assert created.returncode == 0, created.stderr
    assert "warning: 'customer_id' is id-like" in created.stdout, created.stdout
    assert "warning: 'source_system' is constant" in created.stdout, created.stdout
    commands = printed_commands(created.stdout)
    assert any(c.startswith("lifecycle check --model retention --data") for c in commands)
    assert "lifecycle materialize retention-v1 --model retention" in commands, commands
    for command in commands:
        done = onboarding.shell(command)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert _packaged(onboarding, "retention", "retention-v1") == 1


def _packaged(onboarding: Onboarding, model: str, version: str) -> int:
    """How many runs packaged this version of the model in the project's instance."""
    import dagster as dg

    home = onboarding.base / "lifecycle_home" / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey([model, "deployment_package"]),
                asset_partitions=[version],
            ),
            limit=100,
        ).records
    return len(records)

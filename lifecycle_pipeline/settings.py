"""Where the project keeps its state, resolved from the environment when asked, never at import.

Everything local lives under one folder, ``LIFECYCLE_HOME`` (default ``<project>/.lifecycle``),
so that a laptop install is one ``rm -rf`` away from clean. Teams override single locations
(artifact root, registry URL, remote) with their own environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _default_project_root() -> Path:
    candidate = PACKAGE_DIR.parent
    return candidate if (candidate / "pyproject.toml").exists() else Path.cwd()


@dataclass(frozen=True)
class Settings:
    project_root: Path
    home: Path
    artifact_root: str
    registry_url: str
    registry_remote_url: str
    models_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        root = Path(env.get("LIFECYCLE_PROJECT_ROOT") or _default_project_root()).resolve()
        home = Path(env.get("LIFECYCLE_HOME") or root / ".lifecycle").resolve()
        return cls(
            project_root=root,
            home=home,
            artifact_root=env.get("LIFECYCLE_ARTIFACT_ROOT") or str(home / "artifacts"),
            registry_url=env.get("LIFECYCLE_REGISTRY_URL") or str(home / "registry"),
            registry_remote_url=env.get("LIFECYCLE_REGISTRY_REMOTE") or str(home / "dvc-remote"),
            models_dir=Path(env.get("LIFECYCLE_MODELS_DIR") or root / "models").resolve(),
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def sample_data_dir(self) -> Path:
        return self.project_root / "data" / "sample"

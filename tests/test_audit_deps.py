"""The dependency audit fails on a known vulnerability and reports what it could not audit."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import PROJECT_ROOT


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", PROJECT_ROOT / ".ci/audit_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_known_vulnerability_fails_naming_package_advisory_and_fix() -> None:
    code, lines = _module().verdict(
        [
            {"name": "ok", "version": "1.0", "vulns": []},
            {
                "name": "bad",
                "version": "2.0",
                "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["2.1"]}],
            },
        ]
    )
    assert code == 1
    assert lines == ["pip-audit: bad 2.0: GHSA-xxxx (fixed in 2.1)"]


def test_an_unreachable_service_is_reported_not_failed() -> None:
    code, lines = _module().verdict(
        [
            {"name": "a", "version": "1.0", "vulns": []},
            {"name": "b", "skip_reason": "Dependency not found on PyPI: b (1.0)"},
        ]
    )
    assert code == 0
    assert "1 of 2 locked packages audited" in lines[0] and "1 could not be audited" in lines[0]

"""The framework holds no facts about the sample dataset: those live in its declaration and
model-card spec under models/, and in the module that generates the sample data.

A grep over every file of the package (code, templates, data files), names included: a word
of the sample's domain anywhere else means a column, a class name, a unit or a piece of
wording that a declaration should supply.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lifecycle_pipeline"
SAMPLE_DATA = PACKAGE / "sample_data.py"  # generates the sample: the one place its words belong

SAMPLE_WORDS = ("malignant", "tumour", "tumor", "mean_radius", "breast", "benign")
FOUND = re.compile("|".join(SAMPLE_WORDS), re.IGNORECASE)


def _package_files() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p != SAMPLE_DATA
    )


def sample_words_in(files: list[Path], root: Path) -> list[str]:
    """Each occurrence as ``path:line: word`` (path relative to ``root``), the file's own name
    counting as line 0."""
    hits = []
    for path in files:
        where = path.relative_to(root)
        hits += [f"{where}:0: {m.group()}" for m in FOUND.finditer(path.name)]
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            hits += [f"{where}:{number}: {m.group()}" for m in FOUND.finditer(line)]
    return hits


def test_the_scan_finds_sample_words(tmp_path: Path) -> None:
    """The grep itself works: any case, inside identifiers, in file names."""
    planted = tmp_path / "lifecycle_pipeline" / "Breast_report.j2"
    planted.parent.mkdir()
    planted.write_text("ok\nP(Malignant) for each mean_radius_bin\n", encoding="utf-8")
    assert sample_words_in([planted], tmp_path) == [
        "lifecycle_pipeline/Breast_report.j2:0: Breast",
        "lifecycle_pipeline/Breast_report.j2:2: Malignant",
        "lifecycle_pipeline/Breast_report.j2:2: mean_radius",
    ]


def test_no_sample_word_outside_the_sample_data_module() -> None:
    files = _package_files()
    assert len(files) > 20 and SAMPLE_DATA.is_file()  # the scan sees the package
    assert sample_words_in(files, PACKAGE.parent) == []

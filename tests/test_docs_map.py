"""The README stays a few screens long and maps every page of docs/, and no link in the README,
docs/ or CONTRIBUTING.md leads nowhere: each relative link names a file that exists and, with a
``#fragment``, a heading that file has (spelled as GitHub spells heading anchors)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
README_MAX_LINES = 250
FENCE = re.compile(r"^ *(```|~~~)")
HEADING = re.compile(r"^(#{1,6}) +(.*?)(?: +#+)? *$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?: +\"[^\"]*\")?\)")


def pages() -> list[Path]:
    """Every Markdown page a reader is sent to: the README, docs/ and CONTRIBUTING.md."""
    return [README, PROJECT_ROOT / "CONTRIBUTING.md", *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of ``text`` outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation but ``-`` and
    ``_`` dropped, each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings; a repeated one gets ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose(page.read_text(encoding="utf-8")):
        if match := HEADING.match(line):
            base = slug(match[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link in ``text`` that is not a URL."""
    for number, line in prose(text):
        for match in LINK.finditer(re.sub(r"`[^`]*`", "``", line)):  # code is not a link
            if not re.match(r"^[a-z][a-z0-9+.-]*:", match[1]):
                yield number, match[1]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Exit status of `lifecycle`", "exit-status-of-lifecycle"),
        ("What it costs: benchmarks", "what-it-costs-benchmarks"),
        (
            "Runbook: a run died (OOM killer, SIGKILL, a lost machine)",
            "runbook-a-run-died-oom-killer-sigkill-a-lost-machine",
        ),
        ("Every key of `defs.yaml`", "every-key-of-defsyaml"),
        ("3. Fill in the model card's TODOs", "3-fill-in-the-model-cards-todos"),
    ],
)
def test_anchors_are_spelled_as_github_spells_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_readme_fits_on_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, over {README_MAX_LINES}: move a passage to the docs/ page "
        "of its reader and link it from the README's map"
    )


def test_every_docs_page_is_on_the_readmes_map() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Documentation\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "the README has no section '## Documentation' mapping docs/"
    mapped = {(PROJECT_ROOT / t.split("#")[0]).resolve() for _, t in relative_links(match[1])}
    expected = {page.resolve() for page in pages() if page != README}
    missing = sorted(str(page.relative_to(PROJECT_ROOT)) for page in expected - mapped)
    assert missing == [], f"pages the README's map does not link: {missing}"


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(PROJECT_ROOT)))
def test_every_relative_link_names_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for number, target in relative_links(page.read_text(encoding="utf-8")):
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(PROJECT_ROOT)}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no file {path}")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{where}: {path or page.name} has no heading #{fragment}")
    assert broken == []

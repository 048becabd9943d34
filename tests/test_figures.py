"""Every performance figure the documentation quotes comes from a results file the harness wrote.

The passages checked: docs/benchmarks.md, "What it costs: benchmarks"; the reproduction costs in
the runbook docs/runbooks/model-misbehaves.md ("Measured by `make bench` (figure 4 ..."); and
the drift monitor's cost in docs/drift.md ("Cost, measured by `make bench-drift`" with its
table and the paragraph after it). Two layers:

- every number in those passages must be a value of the results they cite, at the precision
  printed and matched by kind (a ratio ``x`` against ratios, ``s`` and ``min`` against
  seconds, ``MiB`` against memory, ``10k``/``100,000`` against row counts, a target against
  ``bench.report.TARGETS``), unless it sits in a parenthesis that starts with "estimate";
- each table cell and each sentence figure is checked against the one result it names, so a
  number swapped for another recorded one fails too.

BENCHMARKS.md must be exactly what ``bench.report.render`` makes of the current results.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.children import OUTSIDE_STEPS, RssSampler
from bench.report import PROFILE_FRAMES, TARGETS, Supplements, profile_seconds, render
from tests.conftest import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
COSTS_PAGE = DOCS / "benchmarks.md"
REPRODUCE_PAGE = DOCS / "runbooks" / "model-misbehaves.md"
DRIFT_PAGE = DOCS / "drift.md"
RESULTS = PROJECT_ROOT / "bench" / "results"
NUMBER = re.compile(
    r"(?<![\w.\-/#])(?P<value>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
    r"(?P<unit>x|k\b|M\b| ?s\b| min\b| MiB\b| SD\b|-core\b)?"
)
Leaves = list[tuple[str, float]]


def lifecycle() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((RESULTS / "lifecycle.json").read_text(encoding="utf-8"))
    return result


def lifecycle_and_large() -> dict[str, Any]:
    """The full run's results, `make bench-large`'s and the round's before (the cost section
    quotes all three)."""
    extra = {}
    for key, name in (("large", "lifecycle-large.json"), ("before", "before-round-two.json")):
        path = RESULTS / name
        extra[key] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {**lifecycle(), **extra}


def lifecycle_and_verdict_count() -> dict[str, Any]:
    """The results and how many reproductions figure 4 ran (the passage counts verdicts;
    ``test_reproduce_figures_are_figure_4`` checks the count against the verdicts)."""
    results = lifecycle()
    runs = results["reproduce"]["reports"].values()
    return {**results, "reproductions": sum(len(reports) for reports in runs)}


def drift() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        (RESULTS / "drift_monitor.json").read_text(encoding="utf-8")
    )
    return result


def blocks(text: str, start: str, count: int) -> str:
    """``count`` blank-line-separated blocks of ``text``, from the one starting with ``start``."""
    at = text.find(start)
    assert at >= 0, f"the page no longer has the passage starting {start!r}"
    return "\n\n".join(text[at:].split("\n\n")[:count])


def section(text: str, heading: str) -> str:
    at = text.find(heading)
    assert at >= 0, f"the page no longer has the section {heading!r}"
    end = text.find("\n## ", at + len(heading))
    return text[at : end if end >= 0 else len(text)]


def costs_section(text: str) -> str:
    return section(text, "# What it costs: benchmarks")


def reproduce_passage(text: str) -> str:
    return blocks(text, "Measured by `make bench` (figure 4", 1)


def drift_passage(text: str) -> str:
    return blocks(text, "Cost, measured by `make bench-drift`", 3)


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a results tree with its path (``sizes.1.dagster.seconds.median``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}.{index}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, float(value)


def decimals(quoted: str) -> int:
    return -int(Decimal(quoted).as_tuple().exponent)


def rounds_to(value: float, quoted: str) -> bool:
    """``value`` printed at ``quoted``'s precision is ``quoted`` (half-up or half-even)."""
    places = decimals(quoted)
    return abs(value - float(quoted)) <= 0.5 * 10**-places + 1e-9


def strip_code(text: str) -> str:
    """Code spans and link targets name things (`data-v1`, `make bench-quick`), not figures."""
    text = re.sub(r"`[^`]*`", "``", text)
    return re.sub(r"\]\([^)]*\)", "]()", text)


def estimate_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\(estimate[^)]*\)", text)]


KINDS: dict[str, tuple[str, Callable[[float], float]]] = {
    # unit -> (what the results path must contain, conversion from the stored value)
    "x": (r"ratio|_over_|slope", lambda v: v),
    "s": (r"seconds", lambda v: v),
    "min": (r"seconds", lambda v: v / 60),
    "MiB": (r"mib", lambda v: v),
    "rows": (r"rows|sizes|sample_cap|tags", lambda v: v),
    "SD": (r"shift_sd", lambda v: v),
    "-core": (r"cores|cpus", lambda v: v),
    "": (r".", lambda v: v),
}


def quoted_figures(passage: str) -> Iterator[tuple[str, str, str]]:
    """(number as printed, kind, context) for every figure in ``passage``."""
    text = strip_code(passage)
    skipped = estimate_spans(text)
    for match in NUMBER.finditer(text):
        if any(start <= match.start() < end for start, end in skipped):
            continue
        value, unit = match["value"], (match["unit"] or "").strip()
        context = text[max(0, match.start() - 40) : match.end() + 40].replace("\n", " ")
        if unit in ("k", "M"):
            number = Decimal(value) * (1000 if unit == "k" else 1_000_000)
            yield str(number), "rows", context
        elif "," in value:
            yield value.replace(",", ""), "rows" if unit == "" else unit, context
        elif unit == "x" and "target" in text[match.end() : match.end() + 30]:
            yield value, "target", context
        else:
            yield value, unit, context


def unmatched(passage: str, results: dict[str, Any]) -> list[str]:
    """The figures of ``passage`` that no result of their kind rounds to."""
    found = list(leaves(results))
    missing = []
    for quoted, kind, context in quoted_figures(passage):
        if kind == "target":
            ok = any(rounds_to(target, quoted) for target in TARGETS.values())
        else:
            pattern, convert = KINDS[kind]
            candidates = [convert(v) for path, v in found if re.search(pattern, path)]
            exact = kind in ("", "rows") and "." not in quoted  # counts are quoted whole
            ok = any(c == float(quoted) if exact else rounds_to(c, quoted) for c in candidates)
        if not ok:
            missing.append(f"{quoted} ({kind or 'plain number'}) in ...{context}...")
    return missing


# Layer 1: every number is a recorded value of its kind --------------------------------------


@pytest.mark.parametrize(
    ("page", "passage", "results"),
    [
        pytest.param(COSTS_PAGE, costs_section, lifecycle_and_large, id="what-it-costs"),
        pytest.param(
            REPRODUCE_PAGE, reproduce_passage, lifecycle_and_verdict_count, id="reproduce"
        ),
        pytest.param(DRIFT_PAGE, drift_passage, drift, id="drift"),
    ],
)
def test_every_documented_figure_is_a_recorded_result(
    page: Path, passage: Callable[[str], str], results: Callable[[], dict[str, Any]]
) -> None:
    text = passage(page.read_text(encoding="utf-8"))
    assert list(quoted_figures(text)), "the passage quotes no figure: the parser lost it"
    assert unmatched(text, results()) == []


# Layer 2: each figure is the result it names ------------------------------------------------


def table(passage: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in passage.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, "the passage has no table"
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def numbers(cell: str) -> list[str]:
    return [m["value"].replace(",", "") for m in NUMBER.finditer(strip_code(cell))]


def assert_quotes(cell: str, *expected: float) -> None:
    quoted = numbers(cell)
    assert len(quoted) == len(expected), f"{cell!r}: expected {len(expected)} figures"
    for text, value in zip(quoted, expected, strict=True):
        assert rounds_to(value, text), f"{cell!r}: {text} is not the recorded {value}"


def test_cost_table_quotes_figure_1_2_3() -> None:
    results = lifecycle_and_large()
    header, rows = table(costs_section(COSTS_PAGE.read_text(encoding="utf-8")))
    sizes_measured = [*results["sizes"], *results["large"].get("sizes", [])]
    by_size = {size["rows"]: size for size in sizes_measured if "dagster" in size}
    sizes = [int(Decimal(numbers(h)[0]) * (1000 if h.endswith("k") else 10**6)) for h in header[1:]]
    picks: dict[str, Callable[[dict[str, Any]], float]] = {
        "Dagster in process / plain functions": lambda s: s["overhead_ratio"]["median"],
        "`dagster asset materialize` / `dvc repro`, whole processes": (
            lambda s: s["cli_over_dvc"]["median"]
        ),
        "peak memory added / data size": lambda s: s["peak_rss_over_data"]["median"],
    }
    assert [row[0] for row in rows] == list(picks)
    for row in rows:
        for rows_count, cell in zip(sizes, row[1:], strict=True):
            if cell == "-":  # only for a figure that size's run did not measure
                with pytest.raises(KeyError):
                    picks[row[0]](by_size[rows_count])
                continue
            assert_quotes(cell, picks[row[0]](by_size[rows_count]))


def test_cost_sentences_quote_the_runs_and_figure_5() -> None:
    results = lifecycle()
    text = costs_section(COSTS_PAGE.read_text(encoding="utf-8"))
    full = re.search(r"last full run took ([\d.]+) min", text)
    assert full and rounds_to(results["total_seconds"] / 60, full[1])
    repetitions = re.search(r"medians of (\d+)", text)
    assert repetitions and int(repetitions[1]) == results["settings"]["repetitions"]
    versions = results["many_versions"]
    claim = re.search(
        r"With (\d+) data-version tags and partitions, (\d+) of them materialized end to end "
        r"and (\d+) promotions and rollbacks recorded, (.+?) each answered in "
        r"([\d.]+) s or less \(slowest of (\d+) runs each\)",
        " ".join(text.split()),
    )
    assert claim, "the 200-version sentence no longer reads as the test expects"
    tags, materialized, changes, _, limit, runs = claim.groups()
    # The claim quotes the largest state measured, and names the failure that stopped more.
    step = versions["steps"][-1]
    assert int(materialized) == step["materialized"]
    if "failed" in versions:
        failing = re.search(r"(data-v\d+):", versions["failed"]["error"])
        assert failing and "not measured yet" in text and f"`{failing[1]}`" in text
    assert int(tags) == versions["populated"]["tags"] == step["partitions"]
    assert int(changes) == step["governance_changes"]
    timed = ("tick", "status", "history", "lineage", "status_cli", "history_cli")
    assert int(runs) == step["status_seconds"]["n"] == results["settings"]["repetitions"]
    slowest = max(step[f"{name}_seconds"]["max"] for name in timed)
    assert rounds_to(slowest, limit), f"the slowest operation took {slowest:.3f} s, not {limit} s"


def test_reproduce_figures_are_figure_4() -> None:
    figure = lifecycle()["reproduce"]
    text = " ".join(reproduce_passage(REPRODUCE_PAGE.read_text(encoding="utf-8")).split())
    expected = {
        r"at the current commit took ([\d.]+) s": figure["current_seconds"]["median"],
        r"against ([\d.]+) s for the original": figure["original_seconds"]["median"],
        r"took ([\d.]+) s in a new worktree": figure["worktree_warm_seconds"]["median"],
        r"uv's check took ([\d.]+) s": figure["worktree_warm_environment_seconds"]["median"],
        r"separate process ([\d.]+) s": figure["worktree_warm_materialize_seconds"]["median"],
        r"already there it took ([\d.]+) s": figure["worktree_reused_seconds"]["median"],
        r"from uv's warm cache it took ([\d.]+) s": figure["worktree_own_seconds"]["median"],
        r"empty uv cache \(downloading the environment; a single run\) ([\d.]+) s": (
            figure["worktree_cold_seconds"]["median"]
        ),
    }
    assert figure["worktree_cold_seconds"]["n"] == 1  # "a single run"
    medians = re.search(r"medians of (\d+)", text)
    assert medians, "the reproduce passage no longer says how many runs its medians are of"
    for key in ("original", "current", "worktree_warm", "worktree_reused", "worktree_own"):
        assert figure[f"{key}_seconds"]["n"] == int(medians[1])
    for pattern, value in expected.items():
        found = re.search(pattern, text)
        assert found, f"the runbook's reproduce passage lost {pattern!r}"
        assert rounds_to(value, found[1]), f"{pattern}: runbook {found[1]}, results {value}"
    verdicts = [r["verdict"] for runs in figure["reports"].values() for r in runs]
    counted = re.search(r"Every verdict was `identical` \((\d+) of (\d+)\)", text)
    assert counted and verdicts.count("identical") == int(counted[1]) == int(counted[2])
    assert len(verdicts) == int(counted[2])


def test_drift_table_quotes_the_drift_benchmark() -> None:
    results = drift()
    passage = drift_passage(DRIFT_PAGE.read_text(encoding="utf-8"))
    header, rows = table(passage)
    assert len(header) == 4 and len(rows) == len(results["sizes"])
    for row, size in zip(rows, results["sizes"], strict=True):
        assert int(numbers(row[0])[0]) == size["rows"]
        ours, same, full = size["ours"], size["preset_sampled"], size["preset_full"]
        assert_quotes(row[1], ours["seconds"]["median"], ours["peak_increase_mib"]["median"])
        for cell, preset, ratios in ((row[2], same, "same_frames"), (row[3], full, "sampling")):
            assert_quotes(
                cell,
                preset["seconds"]["median"],
                preset["peak_increase_mib"]["median"],
                size[ratios]["preset_seconds_over_ours"]["median"],
                size[ratios]["preset_peak_increase_over_ours"]["median"],
            )
    text = " ".join(passage.split())
    cap = re.search(r"samples both frames to ([\d,]+) rows", text)
    assert cap and int(cap[1].replace(",", "")) == results["settings"]["sample_cap"]
    assert f"medians of {results['settings']['repetitions']}" in text
    # "All runs name the same three drifted columns and the same verdict": recorded as such.
    for size in results["sizes"]:
        for kind in ("ours", "preset_sampled", "preset_full"):
            assert len(size[kind]["drifted_columns"]) == 3 and size[kind]["verdict"] == "drift"
        assert size["same_frames"]["same_columns"] and size["sampling"]["same_columns"]
    demo = results["demo_batches"]
    assert all(b["same_columns"] and b["same_verdict"] for b in demo.values())
    assert not demo["batch-002"]["preset"]["preset_dataset_drift"]  # "would call it calm"


# BENCHMARKS.md and the renderer ------------------------------------------------------------


def test_benchmarks_md_is_rendered_from_the_results() -> None:
    """BENCHMARKS.md is `python -m bench.lifecycle --render-only` of the current results."""
    rendered = render(lifecycle())
    assert (PROJECT_ROOT / "BENCHMARKS.md").read_text(encoding="utf-8") == rendered, (
        "BENCHMARKS.md differs from the results: run `python -m bench.lifecycle --render-only`"
    )


def test_profile_seconds_counts_outermost_frames_once(tmp_path: Path) -> None:
    """The report quotes profile frames; a frame nested in itself is not counted twice."""
    profile = tmp_path / "profile.txt"
    profile.write_text(
        "\n".join(
            [
                "10.000 run  a.py:1",
                "`- 4.000 load  a.py:2",
                "   `- 3.000 load  a.py:2",
                "      [3 frames hidden]  pandas",
                "         2.000 decode  a.py:3",
                "   1.500 load  a.py:2",
            ]
        ),
        encoding="utf-8",
    )
    assert profile_seconds(str(profile), "load") == pytest.approx(5.5)
    assert profile_seconds(str(profile), "decode") == pytest.approx(2.0)
    assert profile_seconds(str(profile), "absent") is None
    assert profile_seconds(str(tmp_path / "missing.txt"), "load") is None


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``first_cell``."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row starting {first_cell!r}, found {len(rows)}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def large_run(minutes: float) -> dict[str, Any]:
    """A `make bench-large` results file: the full run's 1M entry measured once at 5M."""
    entry = copy.deepcopy(next(s for s in lifecycle()["sizes"] if s.get("rows") == 1_000_000))
    entry |= {"rows": 5_000_000, "repetitions": 1}
    run = {
        "figures": [1, 3],
        "git_commit": "a" * 40,
        "git_dirty": "no",
        "started_utc": "2026-12-01T10:00:00+00:00",
        "seconds": minutes * 60,
    }
    return {
        "sizes": [entry],
        "runs": [run],
        "total_seconds": minutes * 60,
        "large": {"limit_minutes": 40.0, "within_limit": minutes <= 40},
    }


@pytest.mark.parametrize(("minutes", "fit"), [(31.5, "within"), (45.0, "**over**")])
def test_large_run_is_shown_as_one_labelled_repetition(minutes: float, fit: str) -> None:
    """5M from `make bench-large` replaces the 'out of reach' row, in figures 1 and 3."""
    results = lifecycle()
    text = render(results, Supplements(large=large_run(minutes)))
    label = "5M, one repetition (`make bench-large`)"
    entry = large_run(minutes)["sizes"][0]
    figure_1 = table_row(text[: text.index("## 2.")], label)
    assert figure_1[3].startswith(f"{entry['overhead_ratio']['median']:.2f}x")
    assert figure_1[-1] == "1"
    assert "| 5M | - |" not in text and "5M out of reach" not in text
    assert f"took {minutes:.1f} min: {fit} its 40-minute limit" in text
    assert "on commit aaaaaaaaaaaa, one repetition" in text
    figure_3 = text[text.index("## 3. Growth") : text.index("## 4.")]
    assert f"| {label} |" in figure_3 and "not part of the slope" in figure_3
    # Without the large file, no 5M figure is shown, only the full run's own reason for
    # leaving 5M out if it tried (make bench stops at 1M since bench-large exists).
    without = render(results, Supplements())
    tried = any(s["rows"] == 5_000_000 and "skipped" in s for s in results["sizes"])
    assert ("| 5M | - |" in without) == tried
    assert label not in without


def test_round_two_table_shows_unmeasured_figures_as_dashes() -> None:
    """A figure missing from the 'before' or the 'after' results is '-', never 0."""
    results = lifecycle()
    before = {k: v for k, v in results.items() if k != "reproduce"}
    after = {k: v for k, v in results.items() if k != "many_versions"}
    text = render(after, Supplements(before=before))
    section = text[text.index("## Round two (issue 19)") :]
    rows = {
        cells[1]: cells
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines()
            if re.match(r"\| \d \|", line)
        )
    }
    current = rows["reproduce at the current commit / original"]
    ratio = results["reproduce"]["current_over_original"]
    assert current[2:-1] == [
        "-",
        f"{ratio:.2f}x",
        f"<= {TARGETS['reproduce_current']:g}x",
        "-",
        "PASS" if ratio <= TARGETS["reproduce_current"] else "**MISS**",
    ]
    assert current[-1].startswith("`before-round-two.json` @ ")
    tick = rows["slowest sensor tick"]
    assert tick[3] == "-" and tick[6] == "not measured"
    # Figure 6 has no 'before' file here, and this report's own figure 6 is not passed either.
    assert rows["load at 50 models"][2:4] == ["-", "-"]


def test_profile_frames_quoted_are_defined_in_the_project() -> None:
    """The overhead explanation names profile frames: each must exist in lifecycle_pipeline."""
    sources = {
        path: path.read_text(encoding="utf-8")
        for path in (PROJECT_ROOT / "lifecycle_pipeline").rglob("*.py")
    }
    for name in PROFILE_FRAMES:
        owner, _, function = name.rpartition(".")
        assert any(
            re.search(rf"^\s*def {function}\(", text, re.M)
            and (not owner or re.search(rf"^class {owner}\b", text, re.M))
            for text in sources.values()
        ), f"{name} is quoted by bench/report.py but defined nowhere in lifecycle_pipeline"


def test_rss_sampler_places_the_peak_in_the_step_that_ran() -> None:
    """Per step, the largest sampled increase while it ran; the overall maximum's step."""
    sampler = RssSampler()
    sampler.samples = [(0.0, 1024), (1.0, 3072), (1.5, 11264), (2.5, 6144), (3.5, 2048)]
    spans = {"data_snapshot": (0.5, 1.2), "features": (1.4, 3.0)}
    found = sampler.by_step(spans, before_kib=1024)
    assert found == {
        "rss_peak_by_step_mib": {"data_snapshot": 2.0, "features": 10.0},
        "rss_rise_by_step_mib": {"data_snapshot": 2.0, "features": 8.0},
        "rss_peak_step": "features",
    }
    between = sampler.by_step({"data_snapshot": (0.5, 1.2)}, before_kib=1024)
    assert between["rss_peak_step"] == OUTSIDE_STEPS
    assert sampler.peak(1024) == {"sampled_peak_increase_mib": 10.0, "samples": 5}

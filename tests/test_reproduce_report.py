"""The printed reproduction report names the registry commit it read, moved tag or not.

Only the JSON report held the commit when the tag had not moved: an on-call engineer reading
the terminal could not tell which data the verdict was about.
"""

from __future__ import annotations

from lifecycle_pipeline.reproduce import DataRead, Element, ReproductionReport
from tests.reliability.cases import case

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_printed_report_names_the_registry_commit_when_the_tag_has_not_moved() -> None:
    fault = case("on-call", "reproduce: data tag not moved")
    data = DataRead("data-v1", "/srv/registry", recorded_commit=COMMIT, tag_commit=COMMIT)
    note = data.note()
    assert note is not None
    report = ReproductionReport(
        version="data-v1",
        run_id="r" * 36,
        method="current",
        commit="c" * 40,
        workdir="/work",
        elements=[Element("data_md5", "a" * 32, "a" * 32)],
        model="breast_cancer",
        data=data,
        notes=[note],
    )
    printed = report.render()
    assert fault.shown_in(printed), printed
    assert COMMIT in printed and report.verdict == "identical"

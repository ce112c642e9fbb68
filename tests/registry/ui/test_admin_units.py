"""The pure parts of the management pages: the SVG usage chart (scale, quota marks, labels
escaped) and the pairing of logged garbage collection events into runs."""

from __future__ import annotations

import pytest

from registry.audit.events import AuditEvent
from registry.gcruns import GC_DONE, GC_FAILED, GC_START, done_detail, runs_of
from registry.ui.admin.charts import BAR_WIDTH, LABEL_WIDTH, Bar, usage_bars

pytestmark = pytest.mark.unit


def test_chart_draws_one_bar_per_row_with_quota_marks_on_one_scale() -> None:
    svg = str(usage_bars([Bar("big", 3 << 20, 4 << 20, "/ui/admin/projects/big"),
                          Bar("full", 2 << 20, 1 << 20), Bar("free", 1 << 20)], "Usage"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="chart-bar"') == 2 and svg.count('class="chart-bar over"') == 1
    assert svg.count('class="chart-quota"') == 2
    # the largest number (the 4 MiB quota) spans the track; 3 MiB is three quarters of it
    assert f'x1="{LABEL_WIDTH + BAR_WIDTH}"' in svg
    assert f'width="{round(BAR_WIDTH * 3 / 4)}"' in svg
    assert "3.0 MiB of 4.0 MiB (75%)" in svg and "2.0 MiB of 1.0 MiB (200%)" in svg
    assert '<a href="/ui/admin/projects/big">' in svg


def test_chart_escapes_labels_and_titles() -> None:
    hostile = '"><img src=x onerror=alert(1)><script>alert(1)</script>'
    svg = str(usage_bars([Bar(hostile, 10, None, '/x?"><script>')], hostile))
    assert "<script>" not in svg and "<img" not in svg and '"><img' not in svg
    assert "&lt;script&gt;" in svg and "&#34;&gt;&lt;img" in svg


def test_chart_without_rows_says_so() -> None:
    svg = str(usage_bars([], "Usage"))
    assert "nothing stored yet" in svg and "chart-bar" not in svg


def _event(action: str, at: float, detail: str = "") -> AuditEvent:
    return AuditEvent(action, "root", "local", detail=detail, at=at)


def test_runs_pair_starts_with_their_ends_newest_first() -> None:
    events = [
        _event(GC_START, 10, "run=a"),
        _event(GC_DONE, 12, done_detail("a", 2, 5, 4096, 1, 0, 7, 2.0)),
        _event(GC_START, 20, "run=b"),  # killed: no end
        _event(GC_START, 30, "run=c"), _event(GC_FAILED, 31, "run=c s3 bucket unreachable"),
        _event(GC_START, 40, "run=d"),
    ]
    runs = runs_of(list(reversed(events)))  # the audit log answers newest first
    assert [r.state for r in runs] == ["running", "failed", "unfinished", "done"]
    done = runs[3]
    assert (done.started_at, done.ended_at, done.seconds) == (10, 12, 2)
    assert (done.number("manifests"), done.number("blobs"), done.number("bytes"),
            done.number("uploads"), done.number("nothing")) == (2, 5, 4096, 1, 0)
    assert "run" not in done.figures
    assert runs[1].error == "s3 bucket unreachable" and runs[1].seconds == 1
    assert runs[0].ended_at is None and runs[2].ended_at is None


def test_overlapping_runs_pair_by_their_ids() -> None:
    runs = runs_of([
        _event(GC_START, 10, "run=a"), _event(GC_START, 11, "run=b"),
        _event(GC_DONE, 12, "run=a bytes=1"), _event(GC_DONE, 15, "run=b bytes=2"),
        _event(GC_FAILED, 16, "run=c another collection is running"),  # never started
    ])
    assert [(r.state, r.started_at, r.ended_at) for r in runs] == [
        ("failed", 16, 16), ("done", 11, 15), ("done", 10, 12)]
    assert (runs[1].number("bytes"), runs[2].number("bytes")) == (2, 1)
    assert runs[0].error == "another collection is running"


def test_an_end_whose_start_fell_off_the_page_is_a_run_of_its_own() -> None:
    (run,) = runs_of([_event(GC_DONE, 5, "run=x bytes=10")])
    assert (run.state, run.started_at, run.number("bytes")) == ("done", 5, 10)

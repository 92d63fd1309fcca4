"""The monitoring report: one self-contained page from the monitoring table's rows, and the
command `ride-duration-report` that writes it (its one-line errors)."""

from __future__ import annotations

import functools
import logging
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest

from ride_duration import report as command
from ride_duration.batch import history
from ride_duration.core.limits import Limits
from ride_duration.monitoring.profile import COLUMNS, NUMERIC_COLUMNS, UNKNOWN_ZONE_BIN
from ride_duration.monitoring.report import default_month, month_runs, render, warnings_of
from tests.support.troubleshooting import assert_documented

SCRIPT = "<script>alert('reason')</script>"
EDGES = [2.0, 5.0, 10.0]


def row(month: str, **changes: object) -> dict:
    """A month's row of the monitoring table: published, with a reference, little drift."""
    found: dict = {
        "taxi_type": "green",
        "month": month,
        "state": "published",
        "reason": None,
        "model_version": "ride-duration/3",
        "has_reference": True,
        "rows_read": 1_050,
        "rows_scored": 1_000,
        "rmse": 6.5,
        "mae": 4.5,
        "mean_error": 0.1,
        "unknown_pair_share": 0.01,
        "dropped_share": 0.05,
        "reference_dropped_share": 0.04,
    }
    for column in COLUMNS:
        numeric = column in NUMERIC_COLUMNS
        bins = len(EDGES) + 1 if numeric else UNKNOWN_ZONE_BIN + 1
        found[f"{column}_psi"] = 0.02
        found[f"{column}_js_distance"] = 0.01
        found[f"{column}_unknown_share"] = None if numeric else 0.01
        found[f"{column}_counts"] = [(7 * i) % 11 + 1 for i in range(bins)]
        found[f"{column}_reference_counts"] = [(5 * i) % 13 + 1 for i in range(bins)]
        found[f"{column}_edges"] = EDGES if numeric else None
    found.update(changes)
    return found


NO_REFERENCE = {
    "has_reference": False,
    **{f"{c}_{f}": None for c in COLUMNS for f in ("psi", "js_distance", "unknown_share")},
    **{f"{c}_{k}": None for c in COLUMNS for k in ("counts", "reference_counts", "edges")},
}
NO_TRIPS = {
    "rows_scored": 0,
    "rmse": None,
    "mae": None,
    **{f"{c}_{f}": None for c in COLUMNS for f in ("psi", "js_distance", "unknown_share")},
    **{
        f"{c}_counts": [0] * (len(EDGES) + 1 if c in NUMERIC_COLUMNS else UNKNOWN_ZONE_BIN + 1)
        for c in COLUMNS
    },
}
REFUSED = {"state": "refused", "reason": "rmse 9.1 > MAX_RMSE 8; nothing was published"}
TRENDS, HISTOGRAMS = 3, len(COLUMNS)  # the error and two drift charts; one per column

# (rows, limits, chosen month, charts drawn, words the page says)
CASES = {
    "one month": ([row("2021-03")], Limits(), None, TRENDS + HISTOGRAMS, ["None: every month"]),
    "no reference": (
        [row("2021-03", **NO_REFERENCE)],
        Limits(),
        None,
        TRENDS,
        [
            "2021-03: no reference",
            "no reference</span></td>",
            "1 scored by a model with no reference",
        ],
    ),
    "a refused month's reason, escaped": (
        [row("2021-03"), row("2021-04", **{**REFUSED, "reason": SCRIPT})],
        Limits(),
        "2021-03",
        TRENDS + HISTOGRAMS,
        ["refused (not published)", "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;"],
    ),
    "a warned month": (
        [row("2021-03"), row("2021-04", trip_distance_psi=0.31, PULocationID_psi=0.4)],
        Limits(),
        None,
        TRENDS + HISTOGRAMS,
        [
            "warned (published)",
            "trip_distance psi 0.31 &gt; WARN_PSI 0.25; PULocationID psi 0.4 &gt; WARN_PSI 0.25",
            "1 warned",
        ],
    ),
    "no warning without WARN_PSI": (
        [row("2021-04", trip_distance_psi=0.31)],
        Limits(warn_psi=None),
        None,
        TRENDS + HISTOGRAMS,
        ["None: every month", "0 warned"],
    ),
    "all refused": (
        [row("2021-03", **REFUSED), row("2021-04", **REFUSED)],
        Limits(max_rmse=8),
        None,
        TRENDS + HISTOGRAMS,
        ["0 published, 2 refused", "rmse 9.1 &gt; MAX_RMSE 8", "MAX_RMSE 8"],
    ),
    "no trips scored": (
        [row("2021-03", **NO_TRIPS)],
        Limits(),
        None,
        TRENDS + HISTOGRAMS,
        ["2021-03: no trips", '<td class="n">0</td>'],
    ),
    "NaN and missing figures": (
        [row("2021-03", rmse=math.nan, mae=None, trip_distance_psi=math.nan), row("2021-04")],
        Limits(),
        "2021-03",
        TRENDS + HISTOGRAMS,
        ['<td class="n">\u2013</td>'],
    ),
    "limits drawn, gaps named": (
        [row("2021-01"), row("2021-05", trip_distance_psi=0.7, **REFUSED)],
        Limits(max_psi=0.5, max_js_distance=0.3, max_rmse=8),
        None,
        TRENDS + HISTOGRAMS,
        ["MAX_PSI 0.5", "WARN_PSI 0.25", "MAX_JS_DISTANCE 0.3", "(not scored): 2021-02 to 2021-04"],
    ),
}


def rendered(case: str) -> str:
    rows, limits, chosen, _, _ = CASES[case]
    return render(rows, taxi_type="green", limits=limits, chosen_month=chosen)


@functools.cache
def page_of(case: str) -> str:
    """The case's page, drawn once for the tests that read it (a page takes about a second)."""
    return rendered(case)


class References(HTMLParser):
    """Every tag, and every attribute value that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                self.links.append(value or "")
            self.links += re.findall(r"url\(([^)]*)\)", value or "")


@pytest.mark.parametrize("case", list(CASES))
def test_the_page_draws_each_chart_and_says_what_the_rows_say(case):
    _, _, _, charts, words = CASES[case]
    page = page_of(case)
    assert page.count("<svg") == page.count("</svg>") == charts
    for word in words:
        assert word in page


@pytest.mark.parametrize("case", list(CASES))
def test_the_page_fetches_nothing_and_runs_nothing(case):
    page = page_of(case)
    found = References()
    found.feed(page)
    assert [link for link in found.links if not link.startswith("#")] == []
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert {link.removeprefix("#") for link in found.links} <= ids  # the charts' own parts
    assert not found.tags & {"script", "link", "img", "iframe", "object", "embed", "base"}
    assert "http://" not in page
    assert "https://" not in page
    assert "@import" not in page
    assert "Content-Security-Policy" in page


@pytest.mark.parametrize("case", list(CASES))
def test_ids_are_unique_across_the_pages_charts(case):
    ids = re.findall(r'\sid="([^"]+)"', page_of(case))
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", ["one month", "limits drawn, gaps named"])
def test_the_page_is_the_same_for_the_same_rows(case):
    assert rendered(case) == page_of(case)
    assert "<metadata" not in page_of(case)  # matplotlib's, with its date


def test_every_value_of_the_table_is_escaped():
    hostile = "<b onmouseover=x>&amp;"
    page = render(
        [row("2021-03", model_version=hostile, **{**REFUSED, "reason": hostile})],
        taxi_type="green",
        limits=Limits(),
        title="<i>title</i>",
    )
    assert "<b onmouseover" not in page
    assert "<i>title" not in page
    assert page.count("&lt;b onmouseover=x&gt;&amp;amp;") == 3  # crossings, histograms, months


def test_rows_outside_the_range_are_left_out():
    rows = [row("2020-12", **REFUSED), row("2021-03"), row("2021-07", **REFUSED)]
    page = render(rows, taxi_type="green", limits=Limits(), first="2021-01", last="2021-06")
    assert "2020-12" not in page
    assert "2021-07" not in page
    assert "None: every month" in page
    assert "Not in the table (not scored): 2021-01 to 2021-02, 2021-04 to 2021-06." in page


def test_a_chosen_month_without_a_row_is_said():
    page = render([row("2021-03")], taxi_type="green", limits=Limits(), chosen_month="2021-02")
    assert "2021-02 has no row in the monitoring table" in page


@pytest.mark.parametrize(
    ("rows", "month"),
    [
        ([], None),
        ([row("2021-03")], "2021-03"),
        ([row("2021-03"), row("2021-04", **NO_REFERENCE)], "2021-03"),
        ([row("2021-03"), row("2021-04", **NO_TRIPS)], "2021-03"),
        ([row("2021-03", **NO_REFERENCE), row("2021-04", **NO_REFERENCE)], "2021-04"),
    ],
)
def test_the_histograms_shown_are_the_last_months_that_have_them(rows, month):
    assert default_month(rows) == month


@pytest.mark.parametrize(
    ("psi", "warn_psi", "warned"),
    [
        (0.3, 0.25, ["trip_distance psi 0.3 > WARN_PSI 0.25"]),
        (0.25, 0.25, []),
        (0.3, None, []),
        (None, 0.25, []),
        (math.nan, 0.25, []),
    ],
)
def test_a_month_is_warned_when_a_psi_is_above_warn_psi(psi, warn_psi, warned):
    assert warnings_of(row("2021-03", trip_distance_psi=psi), Limits(warn_psi=warn_psi)) == warned


@pytest.mark.parametrize(
    ("months", "runs"),
    [
        ([], []),
        (["2021-03"], ["2021-03"]),
        (["2021-11", "2021-12", "2022-01", "2022-03"], ["2021-11 to 2022-01", "2022-03"]),
    ],
)
def test_months_are_named_as_runs(months, runs):
    assert month_runs(months) == runs


def test_importing_the_report_imports_no_matplotlib():
    code = "import sys, ride_duration.monitoring.report; print('matplotlib' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An output root whose monitoring table has green 2021-01 to 2021-03 and 2021-05."""
    folder = tmp_path / "output" / "_monitoring"
    folder.mkdir(parents=True)
    for found in (row("2021-01"), row("2021-02"), row("2021-03", **REFUSED), row("2021-05")):
        table = pa.Table.from_pylist([found], schema=history.SCHEMA)
        (folder / f"green-{found['month']}.parquet").write_bytes(history.to_bytes(table))
    return tmp_path / "output"


@pytest.fixture(autouse=True)
def _restore_log_filters():
    """cli.run filters the log handlers it finds; take its filters off again."""
    handlers = [
        h
        for n in ("prefect", "prefect.flow_runs", "prefect.task_runs", "")
        for h in logging.getLogger(n).handlers
    ]
    before = {handler: list(handler.filters) for handler in handlers}
    yield
    for handler, filters in before.items():
        handler.filters[:] = filters


def test_the_command_writes_the_page_and_prints_where(root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert command.main(["green", "2021-01", "2021-06", "--output-root", str(root)]) == 0
    captured = capsys.readouterr()
    written = tmp_path / "report-green-2021-01-2021-06.html"
    assert captured.out == f"{written}\n"
    assert captured.err == ""
    page = written.read_text()
    assert page.count("<svg") == TRENDS + HISTOGRAMS
    assert "Not in the table (not scored): 2021-04, 2021-06." in page
    out = tmp_path / "reports" / "march.html"
    argv = ["green", "2021-01", "2021-03", "--output-root", str(root), "--out", str(out)]
    assert command.main([*argv, "--month", "2021-02"]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert "The reference and 2021-02, column by column" in out.read_text()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["green", "2022-01", "2022-12"],
            "error: no month of green from 2022-01 to 2022-12 in the monitoring table under "
            "{root}: score one first",
        ),
        (
            ["green", "2021-01", "2021-06", "--month", "2021-09"],
            "error: the chosen month 2021-09 is outside the report's months 2021-01 to 2021-06: ",
        ),
        (
            ["green", "2021-01", "2021-06", "--month", "2021-04"],
            "error: green 2021-04 has no row in the monitoring table under {root}: choose a month "
            "it has (2021-01 to 2021-03, 2021-05), or none",
        ),
        (
            ["green", "2021-06", "2021-01"],
            "error: the end month 2021-01 is before the start month 2021-06",
        ),
    ],
)
def test_the_commands_errors_are_one_documented_line(
    root, tmp_path, argv, line, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert command.main([*argv, "--output-root", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(line.format(root=root))
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    assert_documented(captured.err)
    assert sorted(tmp_path.rglob("*")) == before  # no page written

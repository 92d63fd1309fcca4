"""The monitoring report of twelve months, drawn by `ride-duration-report` and opened in a real
browser (headless Chromium via Playwright, as tests/integration/test_ui.py drives it).

The monitoring table is built in-process as a score run builds it: a small forest is trained on
the first month and its reference profile taken (`model.profiling.reference_profile`), then
each month is scored by `batch.month.score_month` into a temporary output root. The months are
generated ones, the last quarter's distances stretched, then the twelve real green ones of
TLC_DATA_DIR (else of data/ or ../shared/data/tlc, where `make` looks) when they are here.
The first two months are scored by an earlier version with no reference profile, and one month
under a MAX_RMSE it crosses, so it is refused. The command draws the report in a fresh process,
and Chromium opens it from its file: every chart is drawn with a size, the console says nothing
wrong, and the browser asks for nothing but the file. Screenshots go to
/tmp/report-screenshot.png (the real months) and /tmp/report-screenshot-generated.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline

from ride_duration.batch.month import score_month
from ride_duration.batch.paths import MonthOutput
from ride_duration.batch.sink import ParquetFolder
from ride_duration.core.errors import QualityError
from ride_duration.core.limits import Limits
from ride_duration.core.months import Month
from ride_duration.core.settings import Settings
from ride_duration.data import features
from ride_duration.data.sources import read_trips
from ride_duration.model.predictors import make_predictor
from ride_duration.model.profiling import reference_profile
from ride_duration.model.resolve import ModelRef
from tests.conftest import REPO
from tests.integration.test_ui import CHROMIUM_ARGS, chromium_binary
from tests.support.tlc_fake import file_name, make_trips, write_trips

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/report-screenshot.png")
REAL_MONTHS = [
    *(Month(2021, m) for m in range(1, 6)),
    *(Month(2022, m) for m in range(1, 4)),
    *(Month(2023, m) for m in range(1, 5)),
]
GENERATED_MONTHS = [Month(2021, m) for m in range(1, 13)]
REFUSED = 6  # the month scored under a MAX_RMSE it crosses (its index)
WITHOUT_REFERENCE = 2  # the first months, scored by an earlier version without a profile
CHARTS = 3 + 5  # the error and the two drift charts; a histogram per profiled column


def model(version: str) -> ModelRef:
    return ModelRef(
        uri="models:/ride-duration@production",
        resolved_uri=f"models:/ride-duration/{version}",
        name="ride-duration",
        version=version,
        run_id=f"run{version}",
    )


def real_folder() -> Path | None:
    """The folder of the twelve real green months, if this machine has one."""
    for candidate in (
        os.environ.get("TLC_DATA_DIR"),
        REPO / "data",
        REPO.parent / "shared" / "data" / "tlc",
    ):
        folder = Path(candidate) if candidate else None
        if folder and all(
            (folder / file_name("green", m.year, m.month)).is_file() for m in REAL_MONTHS
        ):
            return folder
    return None


def generated_months(folder: Path) -> Path:
    """Twelve generated green months, the last three with distances x1.6 (a drift)."""
    for month in GENERATED_MONTHS:
        trips = make_trips("green", month.year, month.month, rows=4_000)
        if month.month >= 10:
            index = trips.schema.get_field_index("trip_distance")
            longer = pc.multiply(
                trips["trip_distance"], pa.scalar(1.6, trips["trip_distance"].type)
            )
            trips = trips.set_column(index, "trip_distance", longer)
        write_trips(folder / file_name("green", month.year, month.month), trips)
    return folder


@dataclass(frozen=True)
class Table:
    """An output root whose monitoring table has a row per month."""

    root: Path
    months: list[Month]
    screenshot: Path


@pytest.fixture(scope="module", params=["generated", "tlc"])
def monitoring_table(request: pytest.FixtureRequest, tmp_path_factory) -> Table:
    """The monitoring table of the generated months, then of the real ones (when found)."""
    if request.param == "tlc":
        folder = real_folder()
        if folder is None:
            pytest.skip("no real green months here (TLC_DATA_DIR, data/, ../shared/data/tlc)")
        months = REAL_MONTHS
    else:
        folder, months = generated_months(tmp_path_factory.mktemp("trips")), GENERATED_MONTHS
    root = tmp_path_factory.mktemp("output")
    uri = {m: str(folder / file_name("green", m.year, m.month)) for m in months}

    names = features.available_features("green")
    trained = read_trips(uri[months[0]], "green", months[0], 500_000)
    forest = RandomForestRegressor(
        n_estimators=10, max_depth=10, min_samples_leaf=10, random_state=0
    )
    pipeline = make_pipeline(DictVectorizer(), forest).fit(
        features.feature_records(trained.table, names),
        trained.table[features.ACTUAL_DURATION].to_numpy(),
    )
    predictor = make_predictor(pipeline)
    profile = reference_profile(predictor, trained)

    for index, month in enumerate(months):
        earlier = index < WITHOUT_REFERENCE

        def score(limits: Limits, month: Month = month, earlier: bool = earlier) -> None:
            score_month(
                taxi_type="green",
                month=month,
                input_uri=uri[month],
                sink=ParquetFolder(MonthOutput(str(root), "green", month), stale_after_seconds=60),
                model=model("1" if earlier else "2"),
                predictor=predictor,
                settings=Settings(limits=limits),
                reference=None if earlier else profile,
            )

        if index == REFUSED:
            with pytest.raises(QualityError, match="> MAX_RMSE 1;"):
                score(Limits(max_rmse=1.0))
        else:
            score(Limits())
    shot = (
        SCREENSHOT
        if request.param == "tlc"
        else SCREENSHOT.with_stem(f"{SCREENSHOT.stem}-generated")
    )
    return Table(root, months, shot)


@pytest.fixture(scope="module")
def report(monitoring_table: Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ride-duration-report green FIRST LAST` run as a user runs it, in a fresh process."""
    first, last = monitoring_table.months[0], monitoring_table.months[-1]
    workdir = tmp_path_factory.mktemp("report")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ride_duration.report",
            "green",
            str(first),
            str(last),
            "--output-root",
            str(monitoring_table.root),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    page = workdir / f"report-green-{first}-{last}.html"
    assert result.stdout == f"{page}\n"
    return page


@dataclass
class Opened:
    """What the browser did with the page: its requests, console lines and page errors."""

    tab: object
    requests: list[str]
    console: list[str]
    errors: list[str]


@pytest.fixture(scope="module")
def opened(report: Path, monitoring_table: Table) -> Iterator[Opened]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    url = report.as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        found = Opened(tab, [], [], [])
        tab.on("request", lambda request: found.requests.append(request.url))
        tab.on("console", lambda line: found.console.append(f"{line.type}: {line.text}"))
        tab.on("pageerror", lambda error: found.errors.append(str(error)))
        # Anything but the page itself is refused, and still recorded above.
        context.route(
            "**/*", lambda route: route.continue_() if route.request.url == url else route.abort()
        )
        try:
            tab.goto(url, wait_until="load")
            tab.screenshot(path=str(monitoring_table.screenshot), full_page=True)
            yield found
        finally:
            context.close()
            browser.close()


def test_every_chart_is_drawn_with_a_size(opened: Opened, monitoring_table: Table):
    charts = opened.tab.locator("svg")
    assert charts.count() == CHARTS
    for index in range(CHARTS):
        box = charts.nth(index).bounding_box()
        assert box is not None, index
        assert box["width"] > 300, (index, box)
        assert box["height"] > 150, (index, box)
    assert monitoring_table.screenshot.stat().st_size > 50_000


def test_the_browser_asks_for_nothing_but_the_file(opened: Opened, report: Path):
    assert opened.requests == [report.as_uri()]
    assert opened.console == []
    assert opened.errors == []


def test_the_page_says_what_the_table_holds(opened: Opened, monitoring_table: Table):
    text = opened.tab.inner_text("main")
    months = monitoring_table.months
    assert f"{len(months)} month(s) in the monitoring table" in text
    assert "refused (not published)" in text
    assert f"{months[REFUSED]}\trefused" in text
    assert "> MAX_RMSE 1; nothing was published" in text
    assert "ride-duration/1" in text  # the earlier version, without a reference
    assert "ride-duration/2" in text
    assert text.count("no reference") >= 2 * WITHOUT_REFERENCE  # both drift cells of each
    assert f"The reference and {months[-1]}, column by column" in text

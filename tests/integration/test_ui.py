"""A custom run typed into the Prefect UI, in a real browser (headless Chromium via Playwright).

The session's Prefect server has deployment.yaml deployed as docs/deployments.md says, with process
workers. A person opens the `monthly` deployment, picks Run > Custom run, chooses green, types
2021 and 3, and submits; a worker scores the month, and the run's page shows it Completed with
its markdown artifact. Screenshots of the form and the finished run are written to
`test-output/ui/` (not committed). Without Debian's `chromium` package the tests are skipped.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import REPO
from tests.integration.conftest import PrefectServer, Trained

pytestmark = pytest.mark.browser

MONTHLY = "ride-duration-prediction/monthly"
SCREENSHOTS = REPO / "test-output" / "ui"
# As the machine's own probe starts it: no sandbox (root), and none of Chromium's calls home,
# which this machine's closed network would refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_binary() -> str | None:
    """The browser binary of Debian's chromium package (its launcher script breaks here)."""
    listed = subprocess.run(["dpkg", "-L", "chromium"], capture_output=True, text=True)
    if listed.returncode != 0:
        return None
    binary = next((p for p in listed.stdout.split() if p.endswith("/lib/chromium/chromium")), None)
    return binary if binary and Path(binary).is_file() else None


@pytest.fixture(scope="module")
def page(prefect_server: PrefectServer) -> Iterator[object]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    local = prefect_server.ui_url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        tab = context.new_page()
        # The UI calls an outside analytics host; nothing but the local server is reached.
        tab.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith((local, "data:", "blob:"))
                else route.abort()
            ),
        )
        try:
            yield tab
        finally:
            context.close()
            browser.close()


def _monthly_runs(server: PrefectServer) -> list:
    """The flow runs of the monthly deployment (sync client: Playwright's loop is running)."""
    with (
        temporary_settings({PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name(MONTHLY)
        return [r for r in client.read_flow_runs() if r.deployment_id == deployment.id]


def _open_custom_run_form(page, server: PrefectServer) -> None:
    """Deployments > monthly > Run > Custom run, as a person clicks through the UI."""
    page.goto(f"{server.ui_url}/")  # the UI's start page (Prefect 3.9 serves its V2 UI there)
    page.get_by_role("link", name="Deployments").first.click()
    page.get_by_role("link", name="monthly", exact=True).click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.get_by_label("year", exact=True).wait_for()  # the form is built after the page


def _fill(page, taxi_type: str, year: str, month: str) -> None:
    page.get_by_role("button", name="Select taxi_type", exact=True).click()
    page.get_by_role("option", name=taxi_type, exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_label("year", exact=True).fill(year)
    page.get_by_label("month", exact=True).fill(month)


def test_a_custom_run_typed_into_the_form_scores_that_month(
    page, prefect_server: PrefectServer, trained: Trained
):
    before = {run.id for run in _monthly_runs(prefect_server)}
    _open_custom_run_form(page, prefect_server)
    _fill(page, "green", "2021", "3")
    page.screenshot(path=SCREENSHOTS / "custom-run-form.png", full_page=True)
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("scheduled to start").first.wait_for()

    deadline = time.monotonic() + 240
    while not (new := [r for r in _monthly_runs(prefect_server) if r.id not in before]):
        assert time.monotonic() < deadline, "the form created no flow run"
        page.wait_for_timeout(500)
    [run] = new
    # What the form sends: the three values typed, and the optional fields left empty.
    assert run.parameters == {
        "taxi_type": "green",
        "year": 2021,
        "month": 3,
        "model_uri": "",
        "input_uri_template": "",
        "output_root": "",
    }
    while not (run.state and run.state.is_final()):
        assert time.monotonic() < deadline, f"flow run {run.name} still {run.state.type}"
        page.wait_for_timeout(1000)
        run = next(r for r in _monthly_runs(prefect_server) if r.id == run.id)
    assert run.state.is_completed(), run.state.message
    assert run.name == "score-green-2021-03"

    page.goto(f"{prefect_server.ui_url}/v2/runs/flow-run/{run.id}")
    page.get_by_text("Completed", exact=True).first.wait_for()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("score-green-2021-03").first.wait_for()
    page.screenshot(path=SCREENSHOTS / "custom-run-completed.png", full_page=True)
    root = Path(prefect_server.env["OUTPUT_ROOT"])
    partition = "taxi_type=green/year=2021/month=03"
    assert (root / partition / "predictions.parquet").is_file()
    assert (root / "_versions" / partition / f"{trained.run_id}.parquet").is_file()


def test_the_form_refuses_month_13_and_creates_no_run(page, prefect_server: PrefectServer):
    before = len(_monthly_runs(prefect_server))
    _open_custom_run_form(page, prefect_server)
    _fill(page, "green", "2021", "13")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_timeout(3000)
    message = page.get_by_label("month", exact=True).evaluate("field => field.validationMessage")
    page.screenshot(path=SCREENSHOTS / "custom-run-month-13.png", full_page=True)
    assert "less than or equal to 12" in message
    assert "/run" in page.url  # still on the form
    assert len(_monthly_runs(prefect_server)) == before


def test_the_backfill_form_offers_taxi_types_as_a_multi_select_and_months_as_text(
    page, prefect_server: PrefectServer
):
    page.goto(f"{prefect_server.ui_url}/")
    page.get_by_role("link", name="Deployments").first.click()
    page.get_by_role("link", name="backfill", exact=True).click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.get_by_label("start", exact=True).wait_for()
    # The deployment's default, green, is a chip of the multi-select; more can be added.
    page.get_by_role("button", name="Remove green tag").wait_for()
    page.get_by_text("One or several TLC trip record types").wait_for()
    page.get_by_label("start", exact=True).fill("2021-01")
    page.get_by_label("end", exact=True).fill("2021-02")
    page.get_by_text("First month, as YYYY-MM").wait_for()
    # the modes, stale among them, and the status switch, each with what it does
    page.get_by_text("stale re-scores months whose input or model changed").wait_for()
    page.get_by_text("List the state of every month (done, stale, missing").wait_for()
    page.screenshot(path=SCREENSHOTS / "backfill-form.png", full_page=True)

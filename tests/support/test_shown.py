"""The docs' shown output is compared with a run's after what varies is set aside."""

from __future__ import annotations

import pytest

from tests.support.shown import shape, shapes


@pytest.mark.parametrize(
    ("line", "shaped"),
    [
        ("run_id: 2c036dfcb1d143cf98923701f818965e", "run_id: <id>"),
        ("rmse: 6.7562", "rmse: <n>"),
        ("  done in 71 s", "done in <n> s"),
        (
            "04:09:14.744 | INFO    | Task run 'resolve-model-680' - Finished",
            "<time> | INFO    | Task run 'resolve-model-<id>' - Finished",
        ),
        (
            "View at http://127.0.0.1:4200/runs/flow-run/af5f0b0b-c016-4bb2-8b56-b0c5a4549c84",
            "View at http://<n>:<n>/runs/flow-run/<uuid>",
        ),
        (
            "== trips from /work/shared/data/tlc/{taxi_type}_tripdata.parquet",
            "== trips from <path>",
        ),
        ("on 73,906 training rows", "on <n> training rows"),
        ("mean_error=-0.014254, rmse=1.07", "mean_error=<n>, rmse=<n>"),
        ("score-green-2021-03", "score-green-<n>-<n>"),
        (
            "output/taxi_type=green/year=2021/month=03/x",
            "output/taxi_type=green/year=<n>/month=<n>/x",
        ),
    ],
)
def test_what_varies_is_set_aside(line, shaped):
    assert shape(line) == shaped


@pytest.mark.parametrize(
    ("printed", "shown", "same"),
    [
        ("== a 1\nb 2\n", "== a 3\nb 4\n", True),
        ("install 1\n== a 1\nb 2\n", "== a 3\nb 4\n", True),  # before the start: not shown
        ("== a 1\nb 2\nc\n", "== a 3\nb 4\n", False),  # a line the docs do not show
        ("== a 1\n", "== a 3\nb 4\n", False),  # a line shown and not printed
        ("== a 1\nwarning: x\n", "== a 3\nb 4\n", False),
        ("b 2\n== a 1\n", "== a 3\nb 4\n", False),  # b came before the start
    ],
)
def test_the_lines_printed_are_the_lines_shown(printed, shown, same):
    assert (shapes(printed, "== ") == shapes(shown, "== ")) is same

"""What a scored month tells its user: the flow's result, its log lines, its Prefect artifact."""

from __future__ import annotations

import logging
from typing import Any

from ride_duration.batch.result import MonthResult
from ride_duration.core import uris


def log_result(
    result: MonthResult, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
) -> None:
    """The run's closing log lines: rows read, dropped and scored, where they went, quality."""
    dropped = ", ".join(f"{reason}={count}" for reason, count in result.rows_dropped.items())
    logger.info(
        "read %d rows, dropped %d (%s), scored %d with %s; wrote %s and %s",
        result.rows_read,
        sum(result.rows_dropped.values()),
        dropped,
        result.rows_scored,
        result.model.label,
        result.output_uri,
        result.manifest_uri,
    )
    logger.info("predicted with %s", result.scoring_path)
    logger.info(
        "quality: %s", ", ".join(f"{name}={value}" for name, value in result.metrics.items())
    )


def summary(result: MonthResult) -> dict[str, Any]:
    """The result as plain JSON-ready values (what the flow returns and the artifact shows)."""
    return {
        "taxi_type": result.taxi_type,
        "month": str(result.month),
        "input": result.input_uri,
        "output": result.output_uri,
        "model_uri": uris.display_uri(result.model.uri),
        "model_version": result.model.label,
        "model_run_id": result.model.run_id,
        "scoring": result.scoring_path,
        "rows_read": result.rows_read,
        "rows_dropped": dict(result.rows_dropped),
        "rows_scored": result.rows_scored,
        "metrics": dict(result.metrics),
        "manifest": result.manifest_uri,
        "seconds": dict(result.seconds),
    }


def closing_line(summary: dict[str, Any]) -> str:
    """What `score.py` prints on stdout once a month is published: the month, the rows scored,
    the model version and the current set's location (its last word, for scripts)."""
    return (
        f"{summary['taxi_type']} {summary['month']}: {summary['rows_scored']} predictions by "
        f"{summary['model_version']} in {summary['output']}"
    )


def markdown_report(result: MonthResult) -> str:
    """A short markdown summary of one scored month, for the run's Prefect artifact."""
    lines = [
        f"# Ride durations, {result.label}",
        "",
        "| | |",
        "|---|---|",
        f"| input | `{result.input_uri}` |",
        f"| output | `{result.output_uri}` |",
        f"| model | `{uris.display_uri(result.model.uri)}` = {result.model.label} |",
        f"| predicted with | {result.scoring_path} |",
        f"| rows read | {result.rows_read:,} |",
        *(
            f"| dropped: {reason.replace('_', ' ')} | {count:,} |"
            for reason, count in result.rows_dropped.items()
        ),
        f"| rows scored | {result.rows_scored:,} |",
        *(
            f"| {name.replace('_', ' ')} | {'n/a' if value is None else f'{value:.4f}'} |"
            for name, value in result.metrics.items()
        ),
        f"| manifest | `{result.manifest_uri}` |",
        f"| seconds | {result.seconds.get('total', 0):.1f} |",
    ]
    return "\n".join(lines) + "\n"


# The columns of a backfill's table (real runs and dry runs alike) and of a status table:
# (key in the row, header, format).
BACKFILL_COLUMNS = [
    ("taxi_type", "taxi type", "{}"),
    ("month", "month", "{}"),
    ("state", "state", "{}"),
    ("model_version", "model", "{}"),
    ("rows_scored", "rows", "{:,}"),
    ("rmse", "rmse", "{:.4f}"),
    ("seconds", "seconds", "{:.1f}"),
    ("reason", "reason", "{}"),
]
STATUS_COLUMNS = [
    ("taxi_type", "taxi type", "{}"),
    ("month", "month", "{}"),
    ("state", "state", "{}"),
    ("model_version", "model", "{}"),
    ("rows_scored", "rows", "{:,}"),
    ("published", "published (UTC)", "{}"),
    ("reason", "reason", "{}"),
]


def text_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a plain-text table: a header, then one aligned line per row; numbers right."""
    cells = [
        ["" if row.get(key) in (None, "") else shape.format(row[key]) for key, _, shape in columns]
        for row in rows
    ]
    headers = [header for _, header, _ in columns]
    widths = [
        max([len(headers[i])] + [len(line[i]) for line in cells]) for i in range(len(headers))
    ]
    numeric = [shape != "{}" for _, _, shape in columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), *(line(values) for values in cells)])

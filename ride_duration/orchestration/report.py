"""What a scored month tells its user: the flow's result, its log lines, its Prefect artifact."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ride_duration.batch import manifest
from ride_duration.batch.result import MonthResult
from ride_duration.core import uris


def log_result(
    result: MonthResult, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
) -> None:
    """The run's closing log lines: rows read, dropped and scored, where they went, quality,
    drift."""
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
    if result.reference is None:
        logger.info("drift: not measured (the model has no reference profile)")
    else:
        psi = ", ".join(
            f"{c.column}={'n/a' if c.psi is None else f'{c.psi:.4f}'}" for c in result.drift
        )
        logger.info("drift (psi) from the model's reference profile: %s", psi)


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
        "drift": manifest.drift_section(result),
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
        "",
        "## Drift from the model's reference profile",
        "",
        *drift_table(manifest.drift_section(result)),
    ]
    return "\n".join(lines) + "\n"


def drift_table(section: Mapping[str, Any]) -> list[str]:
    """A manifest's drift section as markdown lines: each column's PSI and Jensen-Shannon
    distance, and for the zones the share of unknown zones beside the reference's."""
    if section.get("reference") is None:
        return ["no reference profile: drift not measured"]
    lines = [
        "| column | psi | js distance | unknown zones (reference) |",
        "|---|---|---|---|",
    ]
    for column, figures in (section.get("columns") or {}).items():
        unknown = ""
        if "unknown_share" in figures:
            unknown = (
                f"{_share(figures['unknown_share'])} "
                f"({_share(figures.get('reference_unknown_share'))})"
            )
        lines.append(
            f"| {column} | {_figure(figures.get('psi'))} "
            f"| {_figure(figures.get('js_distance'))} | {unknown} |"
        )
    return lines


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def drift_cells(section: Mapping[str, Any] | None, warn_psi: float | None) -> dict[str, Any]:
    """A month's largest drift, from its manifest's drift section, as a row's plain values: the
    column with the largest PSI, that PSI and its Jensen-Shannon distance, and `drift`, what
    a text table shows of them: "0.31 trip_distance", ending in " !" above `warn_psi`
    (WARN_PSI); "0.00" alone when no column drifted at all; "no reference" when the model has
    no reference profile; "n/a" when no figure was measured (no rows scored); blank without a
    section (no set, or a set made before drift was measured)."""
    cells: dict[str, Any] = {"drift": "", "drift_column": "", "psi": None, "js_distance": None}
    if not section:
        return cells
    if section.get("reference") is None:
        return cells | {"drift": "no reference"}
    measured = [
        (column, figures)
        for column, figures in (section.get("columns") or {}).items()
        if isinstance(figures, Mapping) and figures.get("psi") is not None
    ]
    if not measured:
        return cells | {"drift": "n/a"}
    column, figures = max(measured, key=lambda item: float(item[1]["psi"]))
    psi = float(figures["psi"])
    if psi == 0:  # the month the model was trained on: no column drifted
        return cells | {"drift": "0.00", "psi": 0.0, "js_distance": 0.0}
    warned = warn_psi is not None and psi > warn_psi
    return {
        "drift": f"{psi:.2f} {column}" + (" !" if warned else ""),
        "drift_column": column,
        "psi": psi,
        "js_distance": figures.get("js_distance"),
    }


# The columns of a backfill's table (real runs and dry runs alike) and of a status table:
# (key in the row, header, format). Narrow enough for 100 columns before the reason: the rows'
# MAE, unknown-pair share and JS distance are in the flows' table artifacts.
BACKFILL_COLUMNS = [
    ("taxi_type", "taxi type", "{}"),
    ("month", "month", "{}"),
    ("state", "state", "{}"),
    ("model_version", "model", "{}"),
    ("rows_scored", "rows", "{:,}"),
    ("rmse", "rmse", "{:.2f}"),
    ("drift", "drift (psi)", "{}"),
    ("seconds", "seconds", "{:.1f}"),
    ("reason", "reason", "{}"),
]
STATUS_COLUMNS = [
    ("taxi_type", "taxi type", "{}"),
    ("month", "month", "{}"),
    ("state", "state", "{}"),
    ("model_version", "model", "{}"),
    ("rows_scored", "rows", "{:,}"),
    ("rmse", "rmse", "{:.2f}"),
    ("drift", "drift (psi)", "{}"),
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

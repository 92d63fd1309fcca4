"""The monitoring report: one HTML page of a taxi type's months, drawn from the monitoring table.

What a person looks at rather than reads: which months crossed a limit (refused, or published
with a column's PSI above WARN_PSI), each month's RMSE and drift as lines against the limits,
the reference's histograms beside one month's, and a table of every month. The page is
self-contained: its charts are inline SVG (`ride_duration.monitoring.charts`), its style is
inline, and it names nothing to fetch (its Content-Security-Policy forbids fetching anyway), so
it opens from a file, a bucket or a mail, offline. The same rows give the same bytes.

The charts are matplotlib's: already in the full install, it draws static SVG with no
JavaScript and no network, and is the best-kept Python plotting library. It is imported when a
page is rendered, so importing this module is cheap.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ride_duration.core.limits import Limits
from ride_duration.core.months import Month, month_range
from ride_duration.monitoring.profile import COLUMNS

Row = Mapping[str, Any]
DASH = "\u2013"  # an en dash: a figure missing
NAMES = {
    "trip_distance": "Trip distance (miles)",
    "predicted_duration": "Predicted duration (minutes)",
    "actual_duration": "Actual duration (minutes)",
    "PULocationID": "Pickup zone (PULocationID)",
    "DOLocationID": "Dropoff zone (DOLocationID)",
}
COLORS = dict(zip(COLUMNS, ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"), strict=True))
WARN_COLOR, LIMIT_COLOR = "#e69f00", "#d62728"
# Only the page's own style and the charts' style attributes: nothing is fetched.
POLICY = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#1f2933;background:#fff;margin:0;line-height:1.45;font-size:16px}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 6px}h2{font-size:1.2rem;margin:36px 0 4px}
.note{color:#52606d;margin:0 0 10px;max-width:75ch}figure{margin:0}
figcaption{font-weight:600;font-size:.95rem}svg{width:100%;height:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:20px}
table{border-collapse:collapse;font-size:.9rem}th,td{padding:5px 10px;text-align:left;
border-bottom:1px solid #e5e7eb;vertical-align:top}th{background:#f5f7fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.refused{color:#b42318;font-weight:600}.warned{color:#a15c00;font-weight:600}.none{color:#7b8794}
"""


def render(
    rows: Sequence[Row],
    *,
    taxi_type: str,
    limits: Limits,
    first: str | None = None,
    last: str | None = None,
    chosen_month: str | None = None,
    title: str | None = None,
) -> str:
    """The page of `rows` (the monitoring table's, `history.read(...).to_pylist()`) over the
    months `first` to `last` (default: the rows'); the histograms are `chosen_month`'s (default:
    the last month that has them)."""
    found = sorted(str(row["month"]) for row in rows)
    start, end = first or next(iter(found), ""), last or next(reversed(found), "")
    bounds = (Month.parse(start), Month.parse(end)) if start and end else None
    months = [str(month) for month in month_range(*bounds)] if bounds else []
    by_month = {str(row["month"]): row for row in rows if str(row["month"]) in months}
    scored = sorted(by_month)
    span = f", {months[0]} to {months[-1]}" if months else ""
    title = title or f"Ride-duration monitoring: {taxi_type}{span}"
    refused = [m for m in scored if by_month[m]["state"] == "refused"]
    warned = [m for m in scored if m not in refused and warnings_of(by_month[m], limits)]
    bare = [m for m in scored if not by_month[m]["has_reference"]]
    missing = month_runs([m for m in months if m not in by_month])
    summary = (
        f"{len(scored)} month(s) in the monitoring table: {len(scored) - len(refused)} published, "
        f"{len(refused)} refused, {len(warned)} warned (a column's PSI above WARN_PSI "
        f"{_limit(limits.warn_psi)}); {len(bare)} scored by a model with no reference profile."
    )
    if missing:
        summary += f" Not in the table (not scored): {', '.join(missing)}."
    parts = [f"<h1>{_e(title)}</h1>", f'<p class="note">{_e(summary)}</p>']
    parts += ["<h2>Months that crossed a limit</h2>", _crossings(by_month, refused, warned, limits)]
    if scored:
        parts += _trends(months, by_month, limits)
        chosen = chosen_month or default_month([by_month[m] for m in scored])
        parts += _histograms(by_month.get(chosen) if chosen else None, chosen)
        parts += ["<h2>Every month</h2>", _months_table(scored, by_month, limits)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body><main>\n"
        + "\n".join(parts)
        + "\n</main></body></html>\n"
    )


def default_month(rows: Sequence[Row]) -> str | None:
    """The last month with histograms to compare (a reference, and trips), else the last one."""
    compared = [row for row in rows if row["has_reference"] and row["rows_scored"]]
    last = (compared or list(rows))[-1:]
    return str(last[0]["month"]) if last else None


def warnings_of(row: Row, limits: Limits) -> list[str]:
    """The columns whose PSI is above WARN_PSI, worded as the scoring run's warning."""
    if limits.warn_psi is None:
        return []
    return [
        f"{column} psi {value:.4g} > WARN_PSI {limits.warn_psi:g}"
        for column in COLUMNS
        if (value := _float(row.get(f"{column}_psi"))) > limits.warn_psi
    ]


def _crossings(
    by_month: Mapping[str, Row], refused: list[str], warned: list[str], limits: Limits
) -> str:
    """The refused months and their reasons, the warned ones and their columns, by month."""
    if not refused and not warned:
        return (
            '<p class="none">None: every month was published, and no column drifted above '
            "WARN_PSI.</p>"
        )
    lines = []
    for month in sorted(refused + warned):
        row = by_month[month]
        if month in refused:
            outcome, why = ("refused", "refused (not published)"), row["reason"]
        else:
            outcome, why = ("warned", "warned (published)"), "; ".join(warnings_of(row, limits))
        lines.append(
            f'<tr><td>{_e(month)}</td><td class="{outcome[0]}">{outcome[1]}</td>'
            f"<td>{_e(row['model_version'])}</td><td>{_e(why or 'no reason recorded')}</td></tr>"
        )
    return _table(("month", "outcome", "model", "why"), lines)


def _months_table(scored: list[str], by_month: Mapping[str, Row], limits: Limits) -> str:
    lines = []
    for month in scored:
        row = by_month[month]
        state = _e(row["state"])
        if row["state"] == "refused":
            state = f'<span class="refused">{state}</span>'
        elif warnings_of(row, limits):
            state = f'<span class="warned">{state}, warned</span>'
        drift = [_highest(row, figure) for figure in ("psi", "js_distance")]
        if not row["has_reference"]:
            drift = ['<span class="none">no reference</span>'] * 2
        numbers = [_count(row["rows_scored"]), _number(row["rmse"]), _number(row["mae"])]
        lines.append(
            f"<tr><td>{_e(month)}</td><td>{state}</td><td>{_e(row['model_version'])}</td>"
            + "".join(f'<td class="n">{n}</td>' for n in numbers)
            + "".join(f"<td>{d}</td>" for d in drift)
            + "</tr>"
        )
    heads = ("month", "state", "model", "trips scored", "RMSE", "MAE", "highest PSI", "highest JS")
    return _table(heads, lines)


def _trends(months: list[str], by_month: Mapping[str, Row], limits: Limits) -> list[str]:
    """The error chart and the two drift charts, each with its heading and a line on it."""
    from ride_duration.monitoring import charts

    def series(name: str) -> list[float]:
        return [_float(by_month[m].get(name)) if m in by_month else math.nan for m in months]

    def where(test: Any) -> list[int]:
        return [i for i, m in enumerate(months) if m in by_month and test(by_month[m])]

    refused = where(lambda row: row["state"] == "refused")
    bare = where(lambda row: not row["has_reference"])
    error = charts.trend(
        months,
        {"RMSE": series("rmse"), "MAE": series("mae")},
        "minutes",
        [("MAX_RMSE", limits.max_rmse, LIMIT_COLOR), ("MAX_MAE", limits.max_mae, WARN_COLOR)],
        refused=refused,
        salt="error",
    )
    psi = charts.trend(
        months,
        {column: series(f"{column}_psi") for column in COLUMNS},
        "PSI",
        [("WARN_PSI", limits.warn_psi, WARN_COLOR), ("MAX_PSI", limits.max_psi, LIMIT_COLOR)],
        no_reference=bare,
        colors=COLORS,
        log_above=1.0,
        salt="psi",
    )
    js = charts.trend(
        months,
        {column: series(f"{column}_js_distance") for column in COLUMNS},
        "JS distance",
        [("MAX_JS_DISTANCE", limits.max_js_distance, LIMIT_COLOR)],
        no_reference=bare,
        colors=COLORS,
        salt="js",
    )
    grey = " Grey: months scored by a model with no reference profile (no drift)." * bool(bare)
    return [
        "<h2>Error per month</h2>",
        "<p class=\"note\">RMSE and MAE of each month's predictions against its trips' actual "
        "durations, in minutes. A cross marks a month refused by a limit (not published); a gap, "
        "a month not scored.</p>",
        error,
        "<h2>Drift per month: PSI</h2>",
        '<p class="note">The population stability index of each column against the model\'s '
        "reference (the trips it was trained on): under 0.1 is usually read as no change, above "
        f"0.25 as a shift.{grey}</p>",
        psi,
        "<h2>Drift per month: Jensen-Shannon distance</h2>",
        '<p class="note">The same comparison as a distance from 0 (the same shares) to 1 '
        f"(nothing in common), robust to the zones' many empty bins.{grey}</p>",
        js,
    ]


def _histograms(row: Row | None, month: str | None) -> list[str]:
    """The reference's and the month's histograms of each column, side by side."""
    from ride_duration.monitoring import charts

    parts = [f"<h2>The reference and {_e(month or 'a month')}, column by column</h2>"]
    if row is None:
        return [*parts, f'<p class="none">{_e(month)} has no row in the monitoring table.</p>']
    if not row["has_reference"]:
        return [
            *parts,
            f'<p class="none">{_e(month)}: no reference. Its model, '
            f"{_e(row['model_version'])}, has no reference profile to compare its trips with "
            "(ride-duration-profile adds one to a registered version).</p>",
        ]
    parts.append(
        '<p class="note">The share of trips in each bin: grey, the trips the model was trained '
        f"on (its reference); blue, the trips of {_e(month)}. Numeric columns in the reference's "
        f"bins of equal frequency; zones: the {charts.TOP_ZONES} busiest of either, and the "
        "unknown zone.</p>"
    )
    figures = []
    for column in COLUMNS:
        counts, before = row.get(f"{column}_counts"), row.get(f"{column}_reference_counts")
        if counts is None or before is None:
            chart = '<p class="none">no histogram</p>'
        else:
            edges = row.get(f"{column}_edges")
            chart = charts.histogram(before, counts, edges, str(month), salt=column)
        figures.append(f"<figure><figcaption>{NAMES[column]}</figcaption>{chart}</figure>")
    return [*parts, f'<div class="grid">{"".join(figures)}</div>']


def month_runs(months: list[str]) -> list[str]:
    """Months as runs of consecutive ones: ["2021-06 to 2021-12", "2022-04"]."""
    runs: list[list[str]] = []
    for month in months:
        if runs and str(Month.parse(runs[-1][-1]).shift(1)) == month:
            runs[-1].append(month)
        else:
            runs.append([month])
    return [run[0] if len(run) == 1 else f"{run[0]} to {run[-1]}" for run in runs]


def _highest(row: Row, figure: str) -> str:
    found = [(_float(row.get(f"{c}_{figure}")), c) for c in COLUMNS]
    found = [(value, column) for value, column in found if math.isfinite(value)]
    value, column = max(found, default=(math.nan, ""))
    return f"{value:.3g} <span class='none'>{_e(column)}</span>" if column else DASH


def _table(heads: Sequence[str], lines: list[str]) -> str:
    head = "".join(f"<th>{_e(name)}</th>" for name in heads)
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _float(value: object) -> float:
    """A figure as a float, NaN when missing."""
    return float(value) if isinstance(value, int | float) else math.nan


def _number(value: object) -> str:
    number = _float(value)
    return f"{number:.2f}" if math.isfinite(number) else DASH


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else DASH


def _limit(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _e(value: object) -> str:
    return html.escape(str(value))

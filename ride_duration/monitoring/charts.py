"""The monitoring report's charts, as inline SVG: months as lines, two histograms side by side.

Drawn by matplotlib on `Figure` objects (never pyplot, so no display backend is loaded and no
global state is touched), saved as SVG with no date and ids salted per chart: the same figures
give the same bytes, and two charts of one page never share an id. matplotlib is imported when
a chart is drawn.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ride_duration.monitoring.profile import UNKNOWN_ZONE_BIN

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

LIMIT_COLOR = "#d62728"
TOP_ZONES = 20  # the zones a histogram shows: the busiest of the reference's or the month's
RANGE = "\u2013"  # an en dash, between a bin's edges
STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, no glyphs defined per chart
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "axes.axisbelow": True,
}
MOST_TICKS = 18  # month labels on a trend's axis; more months label every other one, or fewer
LINEAR_UP_TO = 3.0  # past this many times `log_above`, a trend's axis is logarithmic above it


Limit = tuple[str, float | None, str]  # the setting's name, its value (None: unset), its colour


@contextmanager
def _drawing(salt: str) -> Iterator[Any]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"ride-duration-{salt}"}):
        yield Figure


def trend(
    months: Sequence[str],
    series: Mapping[str, Sequence[float]],
    ylabel: str,
    limits: Sequence[Limit],
    *,
    salt: str,
    refused: Sequence[int] = (),
    no_reference: Sequence[int] = (),
    colors: Mapping[str, str] | None = None,
    log_above: float | None = None,
) -> str:
    """Each series per month as a line (NaN: a gap), the limits set as horizontal lines, the
    months `no_reference` (indices) shaded, and crosses on the first series' refused months."""
    x = list(range(len(months)))
    with _drawing(salt) as Figure:
        figure = Figure(figsize=(9.5, 3.4), layout="constrained")
        axes = figure.add_subplot()
        for n, index in enumerate(no_reference):
            label = "no reference" if n == 0 else "_nolegend_"
            axes.axvspan(index - 0.5, index + 0.5, color="#eceff3", lw=0, label=label)
        for name, values in series.items():
            color = colors.get(name) if colors else None
            axes.plot(x, values, marker="o", markersize=3.5, linewidth=1.6, label=name, color=color)
        first = next(iter(series.values()), [])
        if refused:
            at = [first[i] if math.isfinite(first[i]) else 0.0 for i in refused]
            axes.scatter(
                refused,
                at,
                marker="x",
                s=70,
                linewidths=2,
                color=LIMIT_COLOR,
                zorder=4,
                label="refused",
            )
        for name, value, color in limits:
            if value is not None:
                axes.axhline(
                    value, color=color, linestyle="--", linewidth=1.2, label=f"{name} {value:g}"
                )
        step = max(1, math.ceil(len(months) / MOST_TICKS))
        slanted = {"rotation": 45, "ha": "right"} if len(months) > 6 else {}
        axes.set_xticks(x[::step], list(months[::step]), **slanted)
        axes.set_xlim(-0.5, len(months) - 0.5)
        axes.set_ylabel(ylabel)
        drawn = [v for values in series.values() for v in values if math.isfinite(v)]
        drawn += [value for _, value, _ in limits if value is not None]
        axes.set_ylim(0, max(drawn) * 1.1 if drawn and max(drawn) > 0 else 1)
        if log_above and drawn and max(drawn) > LINEAR_UP_TO * log_above:
            axes.set_yscale("symlog", linthresh=log_above)
            axes.set_ylabel(f"{ylabel} (log scale above {log_above:g})")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
        return svg_of(figure, salt)


def histogram(
    reference: Sequence[int],
    month: Sequence[int],
    edges: Sequence[float] | None,
    month_label: str,
    *,
    salt: str,
    colors: tuple[str, str] = ("#9aa5b1", "#1f77b4"),
) -> str:
    """The reference's and a month's shares of trips per bin, as bars side by side: a numeric
    column's bins (`edges`, their inner edges), or a zone column's busiest zones and its
    unknown zone (`edges` None). A histogram of no trips is said so."""
    from matplotlib.ticker import PercentFormatter

    labels, kept = _bins(reference, month, edges)
    x = list(range(len(labels)))
    with _drawing(salt) as Figure:
        figure = Figure(figsize=(5.4, 3.4), layout="constrained")
        axes = figure.add_subplot()
        for counts, offset, color, label in (
            (reference, -0.2, colors[0], "reference"),
            (month, 0.2, colors[1], month_label),
        ):
            shares = _shares(counts, kept)
            if shares is None:
                axes.set_title(f"{label}: no trips", loc="right", fontsize=9, color="#7b8794")
            else:
                axes.bar([i + offset for i in x], shares, width=0.4, color=color, label=label)
        axes.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        axes.set_xlim(-0.6, len(labels) - 0.4)
        axes.set_ylabel("share of trips")
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.grid(axis="x", visible=False)
        if sum(reference) or sum(month):
            axes.legend(frameon=False, fontsize=8)
        return svg_of(figure, salt)


def _bins(
    reference: Sequence[int], month: Sequence[int], edges: Sequence[float] | None
) -> tuple[list[str], list[int]]:
    """The bins a histogram shows: their labels and indices."""
    if edges is None:  # zones
        ours, theirs = (
            _shares(reference, range(UNKNOWN_ZONE_BIN)),
            _shares(month, range(UNKNOWN_ZONE_BIN)),
        )
        busiest = [
            max(ours[z] if ours else 0, theirs[z] if theirs else 0) for z in range(UNKNOWN_ZONE_BIN)
        ]
        top = sorted(range(UNKNOWN_ZONE_BIN), key=lambda zone: (-busiest[zone], zone))[:TOP_ZONES]
        return [*(str(zone) for zone in sorted(top)), "unknown"], [*sorted(top), UNKNOWN_ZONE_BIN]
    shown = [f"{edge:.3g}" for edge in edges]
    if not shown:
        return ["all"], [0]
    inner = [f"{low}{RANGE}{high}" for low, high in itertools.pairwise(shown)]
    return [f"< {shown[0]}", *inner, f"\u2265 {shown[-1]}"], list(range(len(shown) + 1))


def _shares(counts: Sequence[int], kept: Sequence[int]) -> list[float] | None:
    """The `kept` bins' shares of all the trips counted (None: no trips)."""
    total = sum(counts)
    return [counts[i] / total if i < len(counts) else 0.0 for i in kept] if total else None


def svg_of(figure: Any, salt: str) -> str:
    """A figure as an `<svg>` element to inline in a page: no XML prologue, no metadata (so no
    date), and its ids (and the references to them) prefixed with `salt`, so that the charts
    of one page never share one."""
    buffer = io.StringIO()
    metadata = dict.fromkeys(("Date", "Creator", "Format", "Type"))
    figure.savefig(buffer, format="svg", metadata=metadata)
    text = buffer.getvalue()
    svg = text[text.index("<svg") :].strip()
    # Namespace names are no references, but the page holds no URL at all: an HTML parser puts
    # an inline <svg> and its xlink:href attributes in their namespaces itself.
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    return re.sub(r'(\sid="|href="#|url\(#)', lambda found: f"{found[1]}{salt}-", svg)

"""Where a month's trips come from: the file a URI template names, read as canonical batches.

Training and scoring read trip files the same way: the columns a model needs, found by the
taxi type's layout, renamed to the canonical trip fields, `batch_size` rows at a time.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from ride_duration.core import storage, uris
from ride_duration.core.errors import ConfigurationError
from ride_duration.core.months import Month
from ride_duration.data import features, layouts


def trip_file_uri(template: str, taxi_type: str, month: Month) -> str:
    """The location of one month's trip file: `template` with `{taxi_type}`, `{year}`, `{month}`.

    Only those three names are allowed (with format specs like `{month:02d}`), and no
    attribute or index access: a template comes from a flow parameter, and `str.format` would
    otherwise reach into Python objects.
    """
    values = {"taxi_type": taxi_type, "year": month.year, "month": month.month}
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        unknown = sorted(names - set(values))
        if unknown:
            raise ConfigurationError(
                f"URI template field {{{unknown[0]}}} is not one of "
                "{taxi_type}, {year}, {month} (with an optional format like {month:02d})"
            )
        uri = template.format(**values)
    except (ValueError, IndexError) as error:
        raise ConfigurationError(f"bad URI template {template!r}: {error}") from None
    if not {"year", "month"} <= names:
        raise ConfigurationError(
            f"URI template {uris.display_uri(template)} has no {{year}} and {{month}}: "
            "every month would read the same file (write e.g. "
            "green_tripdata_{year:04d}-{month:02d}.parquet)"
        )
    return uri


@contextmanager
def open_trips(
    input_uri: str, taxi_type: str, fields: list[str], batch_size: int
) -> Iterator[tuple[dict[str, str], Iterator[pa.Table]]]:
    """A month's trip file as batches of canonical columns, once it is known to have them.

    Yields the canonical-to-source column names and the batches (read while the block runs).
    """
    with storage.open_parquet(input_uri) as parquet:
        columns = layouts.source_columns(taxi_type, parquet.schema_arrow.names, fields)
        batches = storage.iter_batches(parquet, list(columns.values()), batch_size, input_uri)
        yield (
            columns,
            (canonical_table(pa.Table.from_batches([batch]), columns) for batch in batches),
        )


def canonical_table(table: pa.Table, columns: dict[str, str]) -> pa.Table:
    """`table` with just the canonical columns of `columns` (canonical -> source name), renamed."""
    return table.select(list(columns.values())).rename_columns(list(columns))


def canonical_columns(raw: pa.Table, taxi_type: str, fields: list[str]) -> pa.Table:
    """A raw trip table of `taxi_type` with only `fields`, under their canonical names."""
    return canonical_table(raw, layouts.source_columns(taxi_type, raw.column_names, fields))


def read_trips(
    input_uri: str, taxi_type: str, month: Month, batch_size: int
) -> features.PreparedTrips:
    """A whole month of clean trips, with the columns its available features need."""
    fields = features.required_fields(features.available_features(taxi_type))
    dropped: dict[str, int] = {}
    tables, rows = [], 0
    with open_trips(input_uri, taxi_type, fields, batch_size) as (columns, batches):
        for raw in batches:
            prepared = features.prepare_trips(raw, month, first_row=rows, source_names=columns)
            rows += raw.num_rows
            tables.append(prepared.table)
            for reason, count in prepared.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + count
    table = pa.concat_tables(tables) if tables else pa.table({})
    return features.PreparedTrips(table=table, dropped=dropped)

"""A reader of the predictions that reads them again and again while a writer switches sets:
the child process of the tests that race readers against publishes.

    python -m tests.support.reader_child ROOT STOP_FILE [--version-aware]

Each read is one line of JSON on stdout: the rows per model version it saw, by reader
(pandas, pyarrow, and DuckDB for local roots), or the error that stopped it.
"""

from __future__ import annotations

import json
import os
import sys


def sets(table: object) -> list[list]:
    counts = table.group_by("model_version").aggregate([("model_version", "count")])  # type: ignore[attr-defined]
    return sorted([row["model_version"], row["model_version_count"]] for row in counts.to_pylist())


def main(argv: list[str]) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    root, stop = argv[0], argv[1]
    options = {"version_aware": True} if "--version-aware" in argv else {}
    remote = root.startswith("s3://")
    if remote:
        import s3fs

        filesystem = s3fs.S3FileSystem(
            use_listings_cache=False, skip_instance_cache=True, **options
        )
    readers = {
        "pandas": lambda: pa.Table.from_pandas(
            pd.read_parquet(
                root, storage_options={"use_listings_cache": False, **options} if remote else None
            )
        ),
        "pyarrow": lambda: (
            ds.dataset(
                root.removeprefix("s3://"), partitioning="hive", filesystem=filesystem
            ).to_table()
            if remote
            else ds.dataset(root, partitioning="hive").to_table()
        ),
    }
    if not remote:
        import duckdb

        glob = os.path.join(root, "*", "*", "*", "*.parquet")

        def duckdb_over_pyarrow() -> object:
            predictions = ds.dataset(root, partitioning="hive")  # noqa: F841 - DuckDB reads it by name
            return duckdb.sql("SELECT model_version FROM predictions").to_arrow_table()

        readers["duckdb over pyarrow"] = duckdb_over_pyarrow
        readers["duckdb read_parquet"] = lambda: duckdb.sql(
            f"SELECT model_version FROM read_parquet('{glob}', hive_partitioning = true)"
        ).to_arrow_table()
    while not os.path.exists(stop):
        for name, read in readers.items():
            try:
                line = {"reader": name, "sets": sets(read())}
            except Exception as error:  # noqa: BLE001 - every failure is reported to the test
                kind = f"{type(error).__module__}.{type(error).__name__}"
                line = {"reader": name, "error": f"{kind}: {error}"[:300]}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

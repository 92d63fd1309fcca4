"""A CompiledForest kept as one .npz file of plain arrays (no pickle), and read back checked."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ride_duration.forest.compiled import CompiledForest
from ride_duration.forest.table import LookupTable
from ride_duration.forest.vocabulary import PairVocabulary

FORMAT = "ride-duration-compiled-forest"
FORMAT_VERSION = 1
FILE_NAME = "forest.npz"


def save(compiled: CompiledForest, path: str | os.PathLike[str]) -> Path:
    """Write the compiled forest as one .npz (a directory gets forest.npz); the path written.

    The file holds plain arrays, ints narrowed to int32, and a small JSON metadata array;
    it is written beside the target and renamed into place, so it appears only complete.
    """
    target = Path(path)
    if target.is_dir():
        target = target / FILE_NAME
    vocabulary = compiled.vocabulary
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n_columns": vocabulary.n_columns,
        "distance_column": vocabulary.distance_column,
        "n_estimators": compiled.n_estimators,
        "average": compiled.average,
        "table": compiled.table is not None,
    }
    arrays = {
        "metadata": np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8),
        "pair_keys": vocabulary.pair_keys,
        "pair_columns": vocabulary.pair_columns.astype(np.int32),  # < n_columns < 2**31
        **{name: getattr(compiled, name) for name in _NODE_DTYPES},
    }
    if compiled.table is not None:
        arrays["table_pair_columns"] = compiled.table.pair_columns.astype(np.int32)
        arrays["table_cuts"] = compiled.table.cuts
        arrays["table_values"] = compiled.table.values
    staged = target.with_name(f".{target.name}.tmp")
    try:
        with staged.open("wb") as file:
            np.savez(file, **arrays)
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)  # only left when writing failed
    return target


def load(path: str | os.PathLike[str]) -> CompiledForest:
    """The compiled forest saved in the file `path`.

    Raises ValueError, naming the file, when it is not a compiled forest of this format
    version: unreadable, pickled, missing or extra arrays, wrong dtypes or inconsistent trees.
    """
    target = Path(path)
    try:
        arrays = _read_npz(target)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{target} is not a compiled forest: {error}") from error
    try:
        return _from_arrays(arrays)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{target} is not a valid compiled forest: {error}") from error


_NODE_DTYPES: dict[str, type[np.generic]] = {
    "feature": np.int32,
    "threshold": np.float64,
    "left": np.int32,
    "right": np.int32,
    "value": np.float64,
    "roots": np.int32,
}
_TABLE_DTYPES: dict[str, type[np.generic]] = {
    "table_pair_columns": np.int32,
    "table_cuts": np.float64,
    "table_values": np.float64,
}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    loaded = np.load(path, allow_pickle=False)  # a pickled file raises ValueError
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("it holds a single array, not an .npz archive")
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def _from_arrays(arrays: dict[str, np.ndarray]) -> CompiledForest:
    metadata = _metadata(arrays.get("metadata"))
    dtypes: dict[str, type[np.generic]] = {
        "metadata": np.uint8,
        "pair_keys": np.int64,
        "pair_columns": np.int32,
    }
    dtypes |= _NODE_DTYPES | (_TABLE_DTYPES if metadata["table"] else {})
    if set(arrays) != set(dtypes):
        raise ValueError(f"arrays {sorted(arrays)}, expected {sorted(dtypes)}")
    for name, dtype in dtypes.items():
        if arrays[name].dtype != dtype:
            raise ValueError(f"{name} is {arrays[name].dtype}, not {np.dtype(dtype)}")
    vocabulary = PairVocabulary(
        pair_keys=arrays["pair_keys"],
        pair_columns=arrays["pair_columns"].astype(np.int64),
        distance_column=metadata["distance_column"],
        n_columns=metadata["n_columns"],
    )
    table = None
    if metadata["table"]:
        table = LookupTable(
            pair_columns=arrays["table_pair_columns"].astype(np.int64),
            cuts=arrays["table_cuts"],
            values=arrays["table_values"],
        )
    return CompiledForest(
        vocabulary=vocabulary,
        **{name: arrays[name] for name in _NODE_DTYPES},
        n_estimators=metadata["n_estimators"],
        average=metadata["average"],
        table=table,
    )


def _metadata(array: np.ndarray | None) -> dict[str, Any]:
    if array is None or array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("no metadata array")
    metadata = json.loads(array.tobytes().decode())
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"metadata does not name the format {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"format version {metadata.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    types: dict[str, type | tuple[type, ...]] = {
        "n_columns": int,
        "distance_column": (int, type(None)),
        "n_estimators": int,
        "average": bool,
        "table": bool,
    }
    for key, kind in types.items():
        value = metadata.get(key)
        # bool is an int to isinstance: a count that is true or false is as foreign as none
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ValueError(f"metadata {key} is {value!r}")
    return metadata

"""Compiled models kept as one .npz file of plain arrays (no pickle), and read back checked.

Each compiled kind is one entry of `KINDS`: its type, its file beside the model, its arrays,
its compiler and its verifier. The file's metadata names its kind. The forest's arrays are
this module's own (its format came first); a kind added later brings all of its parts in one
module of its own, as `ride_duration.forest.linear` does.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ride_duration.forest import compiler, linear, verify
from ride_duration.forest.compiled import CompiledForest
from ride_duration.forest.table import LookupTable
from ride_duration.forest.vocabulary import PairVocabulary

FILE_NAME = "forest.npz"  # the forest's file


class CompiledModel(Protocol):
    """What every compiled kind offers its predictor: numpy alone, scikit-learn's bits."""

    @property
    def vocabulary(self) -> PairVocabulary: ...

    @property
    def features(self) -> tuple[str, ...]: ...

    def predict(self, pair_column: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
        """One prediction per ride: its pair column (-1: unseen) and its distance."""
        ...


class Verified(Protocol):
    """What a kind's verifier checked, bit for bit against scikit-learn."""

    @property
    def given_rows(self) -> int: ...

    def describe(self) -> str: ...


Metadata = Mapping[str, Any]
Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CompiledKind:
    """One compiled kind: what the package needs to compile, check, write, find and read it."""

    name: str  # recorded in the file's metadata
    noun: str  # "compiled forest": how errors and predictors name it
    file_name: str  # its file beside the model's pickle
    model_type: type
    regressors: tuple[str, ...]  # the scikit-learn regressors (class names) it compiles
    compile: Callable[[Any], Any]  # a fitted pipeline -> its compiled model
    verify: Callable[[Any, Any, Sequence[Mapping[str, Any]]], Verified]
    to_arrays: Callable[[Any], tuple[dict[str, Any], dict[str, np.ndarray]]]
    metadata_types: Mapping[str, type | tuple[type, ...]]
    array_dtypes: Callable[[Metadata], Mapping[str, type[np.generic]]]
    from_arrays: Callable[[Metadata, Arrays], Any]
    version: int = 1  # of its arrays' layout: a reader refuses another

    @property
    def format(self) -> str:
        """The format its file's metadata names ("ride-duration-compiled-forest", as before
        kinds were recorded)."""
        return f"ride-duration-compiled-{self.name}"


def kind_of(model: object) -> CompiledKind | None:
    """The kind of a compiled model; None for anything else."""
    return next((kind for kind in KINDS if type(model) is kind.model_type), None)


def kind_compiling(pipeline: Any) -> CompiledKind | None:
    """The kind that compiles this pipeline, by its last step's class; None when none does."""
    steps = getattr(pipeline, "steps", None)
    last = type(steps[-1][1]).__name__ if isinstance(steps, list) and steps else None
    return next((kind for kind in KINDS if last in kind.regressors), None)


def save(compiled: CompiledModel, path: str | os.PathLike[str]) -> Path:
    """Write the compiled model as one .npz (a directory gets its kind's file name); the path
    written.

    The file holds plain arrays, ints narrowed to int32, and a small JSON metadata array
    naming its kind; it is written beside the target and renamed into place, so it appears
    only complete.
    """
    kind = kind_of(compiled)
    if kind is None:
        raise TypeError(f"a {type(compiled).__name__} is no compiled kind")
    target = Path(path)
    if target.is_dir():
        target = target / kind.file_name
    fields, arrays = kind.to_arrays(compiled)
    metadata = {"format": kind.format, "format_version": kind.version, "kind": kind.name}
    encoded = np.frombuffer(json.dumps(metadata | fields).encode(), dtype=np.uint8)
    named: dict[str, Any] = {"metadata": encoded, **arrays}  # savez's stubs take Any here
    staged = target.with_name(f".{target.name}.tmp")
    try:
        with staged.open("wb") as file:
            np.savez(file, **named)
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)  # only left when writing failed
    return target


def load(path: str | os.PathLike[str], kind: str | None = "forest") -> Any:
    """The compiled model saved in the file `path`, of kind `kind` (None: any kind).

    Raises ValueError, naming the file, when it is not a compiled model of that kind and of
    its format version: unreadable, pickled, another kind, missing or extra arrays, wrong
    dtypes or inconsistent arrays.
    """
    target = Path(path)
    noun = "compiled model" if kind is None else _kind_named(kind).noun
    try:
        arrays = _read_npz(target)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{target} is not a {noun}: {error}") from error
    try:
        return _from_arrays(arrays, kind)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{target} is not a valid {noun}: {error}") from error


def _kind_named(name: str) -> CompiledKind:
    found = next((kind for kind in KINDS if kind.name == name), None)
    if found is None:
        raise ValueError(f"no compiled kind is named {name!r}")
    return found


def _forest_arrays(compiled: CompiledForest) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    vocabulary = compiled.vocabulary
    metadata = {
        "n_columns": vocabulary.n_columns,
        "distance_column": vocabulary.distance_column,
        "n_estimators": compiled.n_estimators,
        "average": compiled.average,
        "table": compiled.table is not None,
    }
    arrays = {
        "pair_keys": vocabulary.pair_keys,
        "pair_columns": vocabulary.pair_columns.astype(np.int32),  # < n_columns < 2**31
        **{name: getattr(compiled, name) for name in _NODE_DTYPES},
    }
    if compiled.table is not None:
        arrays["table_pair_columns"] = compiled.table.pair_columns.astype(np.int32)
        arrays["table_cuts"] = compiled.table.cuts
        arrays["table_values"] = compiled.table.values
    return metadata, arrays


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


def _forest_dtypes(metadata: Metadata) -> dict[str, type[np.generic]]:
    dtypes: dict[str, type[np.generic]] = {"pair_keys": np.int64, "pair_columns": np.int32}
    return dtypes | _NODE_DTYPES | (_TABLE_DTYPES if metadata["table"] else {})


def _forest_from_arrays(metadata: Metadata, arrays: Arrays) -> CompiledForest:
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


def _from_arrays(arrays: dict[str, np.ndarray], expected: str | None) -> Any:
    kind, metadata = _metadata(arrays.get("metadata"))
    if expected is not None and kind.name != expected:
        raise ValueError(f"it holds a {kind.noun}, not a {_kind_named(expected).noun}")
    dtypes: dict[str, type[np.generic]] = {"metadata": np.uint8, **kind.array_dtypes(metadata)}
    if set(arrays) != set(dtypes):
        raise ValueError(f"arrays {sorted(arrays)}, expected {sorted(dtypes)}")
    for name, dtype in dtypes.items():
        if arrays[name].dtype != dtype:
            raise ValueError(f"{name} is {arrays[name].dtype}, not {np.dtype(dtype)}")
    return kind.from_arrays(metadata, arrays)


def _metadata(array: np.ndarray | None) -> tuple[CompiledKind, dict[str, Any]]:
    if array is None or array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("no metadata array")
    metadata = json.loads(array.tobytes().decode())
    named = metadata.get("format") if isinstance(metadata, dict) else None
    kind = next((kind for kind in KINDS if kind.format == named), None)
    if kind is None:
        formats = ", ".join(repr(kind.format) for kind in KINDS)
        raise ValueError(f"metadata does not name the format of a compiled model ({formats})")
    # A forest written before kinds were recorded names its format alone.
    if metadata.get("kind", kind.name) != kind.name:
        raise ValueError(f"metadata names the format {named!r} but the kind {metadata['kind']!r}")
    if metadata.get("format_version") != kind.version:
        raise ValueError(
            f"format version {metadata.get('format_version')!r}, this code reads {kind.version}"
        )
    for key, types in kind.metadata_types.items():
        value = metadata.get(key)
        # bool is an int to isinstance: a count that is true or false is as foreign as none
        if not isinstance(value, types) or isinstance(value, bool) != (types is bool):
            raise ValueError(f"metadata {key} is {value!r}")
    return kind, metadata


KINDS: tuple[CompiledKind, ...] = (
    CompiledKind(
        name="forest",
        noun="compiled forest",
        file_name=FILE_NAME,
        model_type=CompiledForest,
        regressors=("RandomForestRegressor", "DecisionTreeRegressor"),
        compile=compiler.compile_pipeline,
        verify=verify.verify,
        to_arrays=_forest_arrays,
        metadata_types={
            "n_columns": int,
            "distance_column": (int, type(None)),
            "n_estimators": int,
            "average": bool,
            "table": bool,
        },
        array_dtypes=_forest_dtypes,
        from_arrays=_forest_from_arrays,
    ),
    CompiledKind(
        name=linear.KIND,
        noun="compiled linear model",
        file_name=linear.FILE_NAME,
        model_type=linear.CompiledLinear,
        regressors=("LinearRegression",),
        compile=linear.compile_pipeline,
        verify=linear.verify,
        to_arrays=linear.to_arrays,
        metadata_types=linear.METADATA_TYPES,
        array_dtypes=lambda metadata: linear.ARRAY_DTYPES,
        from_arrays=linear.from_arrays,
    ),
)

"""Choosing a model's runtime: the one place it is chosen (`make_predictor`).

The runtimes (`ride_duration.model.runtimes`), asked in order, each taking the models it serves:

- `compiled`: a model's compiled form (`ride_duration.forest`: a forest or a linear model),
  evaluated with numpy alone, bit for bit scikit-learn's n_jobs=1 answers;
- `pipeline`: a scikit-learn Pipeline whose first step is a DictVectorizer, the fast path;
- `records`: any other model, one feature dict per trip, as it was trained.

A new model format is one module in `runtimes/` with the `Predictor` methods and one entry in
`RUNTIMES`, before `records`, which takes everything. A predictor holds only what it was built
from: it is safe to share between threads and requests. The one piece of state, the month's
prediction cache, is passed in by batch scoring.
"""

from __future__ import annotations

from typing import Any

from ride_duration.model.runtimes.base import Predictor
from ride_duration.model.runtimes.compiled import CompiledPredictor
from ride_duration.model.runtimes.pipeline import DictVectorizerPredictor
from ride_duration.model.runtimes.records import RecordsPredictor

RUNTIMES: tuple[type[Predictor], ...] = (
    CompiledPredictor,
    DictVectorizerPredictor,
    RecordsPredictor,
)


def make_predictor(model: Any, available: tuple[str, ...] | None = None) -> Predictor:
    """The first runtime of `RUNTIMES` that serves `model`: the fastest that gives the model's
    own predictions. `available`: the features at hand (None: all of them)."""
    for runtime in RUNTIMES:
        predictor = runtime.for_model(model, available)
        if predictor is not None:
            return predictor
    raise TypeError(f"no runtime serves a {type(model).__name__}")  # records serves any model

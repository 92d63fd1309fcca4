"""The forests every forest test module compares, fitted and compiled once for the package."""

from __future__ import annotations

import copy

import pytest

from ride_duration.forest import compiler
from tests.support.forests import MODELS, durations, make_rides, records


@pytest.fixture(scope="package")
def train_rides():
    return make_rides(3_000, seed=1, locations=12)


@pytest.fixture(scope="package")
def score_rides():
    """More rides than the walk takes all trees at once for, with locations never trained on."""
    pickup, dropoff, distance = make_rides(6_000, seed=2, locations=14)
    return pickup, dropoff, distance


@pytest.fixture(scope="package")
def pipelines(train_rides):
    pickup, dropoff, distance = train_rides
    target = durations(pickup, dropoff, distance, seed=3)
    return {
        name: factory().fit(records(pickup, dropoff, distance, features), target)
        for name, (factory, features) in MODELS.items()
    }


@pytest.fixture(scope="package")
def references(pipelines):
    """Each pipeline's copy predicting with n_jobs=1, the reference."""
    models = {}
    for name, pipeline in pipelines.items():
        model = copy.deepcopy(pipeline)
        if hasattr(model[-1], "n_jobs"):
            model[-1].set_params(n_jobs=1)
        models[name] = model
    return models


@pytest.fixture(scope="package")
def compiled(pipelines):
    return {name: compiler.compile_pipeline(pipeline) for name, pipeline in pipelines.items()}

"""Why a model is not compiled, or a compiled forest refused (`forest.errors`): ValueErrors."""

from __future__ import annotations

import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from ride_duration.forest import compiler, verify
from ride_duration.forest.errors import CompiledMismatchError, NotCompilableError


def test_a_model_that_is_no_forest_is_not_compilable_and_callers_may_catch_a_value_error():
    linear = make_pipeline(DictVectorizer(), LinearRegression())
    linear.fit([{"PU_DO": "1_2", "trip_distance": 1.0}] * 2, [1.0, 2.0])
    with pytest.raises(ValueError, match="not a random forest") as caught:
        compiler.compile_pipeline(linear)
    assert type(caught.value) is NotCompilableError


def test_a_forest_that_differs_from_its_model_is_a_mismatch(compiled, pipelines):
    with pytest.raises(ValueError, match="differs from scikit-learn") as caught:
        verify.verify(compiled["forest"], pipelines["single-tree"], max_grid_rows=10_000)
    assert type(caught.value) is CompiledMismatchError

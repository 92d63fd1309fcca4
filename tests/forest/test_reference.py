"""scikit-learn's own predictions on encoded rows (`forest.reference`)."""

from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from ride_duration.forest.errors import NotCompilableError
from ride_duration.forest.reference import Reference, pipeline_steps, vectorizer_rows, with_one_job
from ride_duration.forest.vocabulary import PairVocabulary
from tests.support.forests import records


def test_one_job_is_the_estimator_itself_or_a_copy_with_one_job():
    one = RandomForestRegressor(n_jobs=1)
    assert with_one_job(one) is one
    busy = RandomForestRegressor(n_jobs=-1)
    single = with_one_job(busy)
    assert single is not busy
    assert (single.n_jobs, busy.n_jobs) == (1, -1)


def test_encoded_rows_are_the_vectorizers_rows(pipelines, train_rides):
    vectorizer = pipelines["forest"].steps[0][1]
    vocabulary = PairVocabulary.from_dict_vectorizer(vectorizer)
    rows = records(*(side[:200] for side in train_rides))
    pickup, dropoff = train_rides[0][:200], train_rides[1][:200]
    pairs = vocabulary.encode(pickup, dropoff)
    ours = vectorizer_rows(vocabulary, vectorizer.dtype, pairs, train_rides[2][:200])
    ours.sort_indices()
    assert (ours != vectorizer.transform(rows)).nnz == 0


def test_the_reference_predicts_rows_as_the_pipeline_predicts_dicts(pipelines, train_rides):
    reference = Reference(pipelines["forest"])
    rows = records(*(side[:300] for side in train_rides))
    pairs = reference.vocabulary.encode(train_rides[0][:300], train_rides[1][:300])
    expected = reference.predict_records(rows)
    assert reference.predict_rows(pairs, train_rides[2][:300]).tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("pipeline", "says"),
    [
        (LinearRegression(), "not Pipeline"),
        (make_pipeline(DictVectorizer(), LinearRegression()), "not a random forest"),
        (make_pipeline(DictVectorizer(), RandomForestRegressor()), "not fitted"),
    ],
)
def test_what_is_not_a_dict_vectorizer_and_a_forest_is_refused(pipeline, says):
    with pytest.raises(NotCompilableError, match=says):
        pipeline_steps(pipeline)

"""A served model kept current with its alias (`model.refresh`): a registry in sqlite, real
models (`tests.support.moving_alias`), the alias moved between looks."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ride_duration.core.errors import ModelCheckError
from ride_duration.model import service
from ride_duration.model.refresh import ModelRefresher, movable
from ride_duration.model.resolve import ModelRef
from ride_duration.model.service import CHECK_RIDES, ServingModel, check_answers
from tests.support.moving_alias import EMPTY, GOOD, NAN, OTHER, moving_registry
from tests.support.troubleshooting import assert_documented

RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@pytest.fixture
def registry(tmp_path):
    return moving_registry(tmp_path)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/ride-duration@production", True),
        ("models:/ride-duration/latest", True),
        ("models:/ride-duration/LATEST", True),
        ("models:/ride-duration/3", False),
        ("models:/m-0123", False),
        ("runs:/abc/model", False),
        ("s3://bucket/model", False),
        ("/models/ride", False),
    ],
)
def test_only_an_alias_or_latest_can_move(uri, expected):
    assert movable(uri) is expected


@pytest.mark.parametrize(
    ("moves", "outcomes", "serving", "warnings"),
    [
        ([GOOD], ["unchanged"], "ride-duration/1", 0),
        ([OTHER], ["switched"], "ride-duration/2", 0),
        ([OTHER, OTHER], ["switched", "unchanged"], "ride-duration/2", 0),
        ([OTHER, GOOD], ["switched", "switched"], "ride-duration/1", 0),
        # a version that does not load, or answers no minutes, is refused once, not retried
        ([EMPTY, EMPTY], ["refused", "unchanged"], "ride-duration/1", 1),
        ([NAN], ["refused"], "ride-duration/1", 1),
        ([EMPTY, OTHER], ["refused", "switched"], "ride-duration/2", 1),
        # the registry gone: the lookup fails, said once for as long as it fails
        ([None, None, None], ["lookup_failed"] * 3, "ride-duration/1", 1),
        ([None, OTHER], ["lookup_failed", "switched"], "ride-duration/2", 1),
    ],
    ids=[
        "same",
        "moved",
        "moved once",
        "moved back",
        "no model files",
        "answers NaN",
        "refused then a good one",
        "registry gone",
        "registry gone then back",
    ],
)
def test_each_look_switches_only_to_a_version_that_loads_and_answers(
    registry, caplog, moves, outcomes, serving, warnings
):
    settings, move = registry
    answers = {  # each good version's own answer, read while the store is there
        f"ride-duration/{v}": service.load(f"models:/ride-duration/{v}", settings).predict_rides(
            [RIDE]
        )
        for v in (GOOD, OTHER)
    }
    heard = []
    refresher = ModelRefresher(
        service.load(settings.default_model_uri, settings),
        settings,
        listener=lambda outcome, before, after: heard.append((outcome, after.version)),
    )
    with caplog.at_level(logging.INFO, logger="ride_duration.model.refresh"):
        seen = []
        for version in moves:
            move(version)
            seen.append(refresher.poll())
    assert seen == outcomes
    assert refresher.model.version == serving
    assert [outcome for outcome, _ in heard] == [o for o in outcomes if o != "unchanged"]
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == warnings, [r.getMessage() for r in lines]
    assert all("\n" not in r.getMessage() for r in caplog.records)
    # the model it serves answers as that version's own does
    assert refresher.model.predict_rides([RIDE]) == answers[serving]


def test_the_refusal_says_which_version_and_why_in_one_line(registry, caplog):
    settings, move = registry
    refresher = ModelRefresher(service.load(settings.default_model_uri, settings), settings)
    move(NAN)
    with caplog.at_level(logging.WARNING, logger="ride_duration.model.refresh"):
        assert refresher.poll() == "refused"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        "model refresh: models:/ride-duration@production now names ride-duration/4, which is "
        "refused (model ride-duration/4 answers [nan, nan] for 2 check rides, not a finite "
        "number of minutes each: it is not served); still serving ride-duration/1"
    )


def test_the_thread_looks_at_once_then_every_interval_and_stops(tmp_path):
    settings, move = moving_registry(tmp_path, MODEL_REFRESH_SECONDS="1")
    refresher = ModelRefresher(service.load(settings.default_model_uri, settings), settings)
    move(OTHER)
    assert refresher.start()
    try:
        assert refresher.polled.wait(30)
        assert refresher.model.version == "ride-duration/2"
        assert not refresher.start()  # one thread per refresher
    finally:
        refresher.stop()
    assert not refresher._thread.is_alive()


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({"MODEL_REFRESH_SECONDS": "0"}, None),
        (
            {"MODEL_URI": "models:/ride-duration/1", "MODEL_REFRESH_SECONDS": "1"},
            "MODEL_REFRESH_SECONDS is set, but models:/ride-duration/1 names one version: "
            "nothing to refresh",
        ),
    ],
    ids=["off", "a fixed version"],
)
def test_no_thread_when_off_or_when_nothing_can_move(tmp_path, caplog, environ, said):
    settings, _ = moving_registry(tmp_path, **environ)
    refresher = ModelRefresher(service.load(settings.default_model_uri, settings), settings)
    with caplog.at_level(logging.INFO, logger="ride_duration.model.refresh"):
        assert not refresher.start()
    assert [r.getMessage() for r in caplog.records] == ([said] if said else [])


class _Answers:
    """A predictor answering fixed values, for the check."""

    path = "fixed answers"
    features = ()

    def __init__(self, values) -> None:
        self.values = values

    def predict_checked(self, checked):
        if isinstance(self.values, Exception):
            raise self.values
        return np.asarray(self.values, dtype=float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([12.5, 18.0], None),
        ([0.0, 0.0], None),
        ([np.nan, np.nan], "answers [nan, nan] for 2 check rides, not a finite number of minutes"),
        ([np.nan, 18.0], "answers [nan, 18] for 2 check rides"),
        ([np.inf, 1.0], "answers [inf, 1] for 2 check rides"),
        ([12.5], "answers [12.5] for 2 check rides"),
        (MemoryError("no room"), "fails on a check ride (MemoryError: no room): it is not served"),
    ],
)
def test_the_check_wants_a_finite_answer_for_each_check_ride(values, message):
    model = ServingModel(
        ModelRef(
            uri="models:/ride-duration@production",
            resolved_uri="models:/ride-duration/4",
            name="ride-duration",
            version="4",
        ),
        _Answers(values),
    )
    assert len(CHECK_RIDES) == 2
    if message is None:
        check_answers(model)
        return
    with pytest.raises(ModelCheckError) as raised:
        check_answers(model)
    assert f"error: model ride-duration/4 {message}" in f"error: {raised.value}"
    assert_documented(f"error: {raised.value}")

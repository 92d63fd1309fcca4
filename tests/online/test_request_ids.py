"""Request ids (`online.request_ids`): which ids are kept, and how the app answers with them."""

from __future__ import annotations

import json
import logging
import re

import pytest

from ride_duration.model.predictors import make_predictor
from ride_duration.model.service import ServingModel
from ride_duration.online import request_ids, web
from tests.support.rides import MODEL, RIDE

MADE = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),  # a UUID, with its dashes
        ("0f8fad5bd9cb469fa16570867728950e", True),
        ("trace:span.1_2", True),
        ("a" * 128, True),
        ("a" * 129, False),  # too long
        ("", False),
        ("abc 123", False),  # a space
        ("abc,def", False),  # two ids in one header (how WSGI joins repeated headers)
        ("a\r\nX-Injected: 1", False),
        ("a\nb", False),
        ("abc\n", False),  # a line end after a good id
        ("a\x00b", False),
        ("é", False),  # other scripts
        ("Ã©", False),  # UTF-8 as WSGI hands it over (latin-1)
        ("١٢٣", False),  # digits of another script
        ('"quoted"', False),
        (None, False),
    ],
)
def test_an_id_is_kept_only_when_short_and_plain(sent, kept):
    assert request_ids.kept(sent) is kept
    if kept:
        assert request_ids.request_id(sent) == sent
    else:
        assert MADE.fullmatch(request_ids.request_id(sent))


def test_made_ids_differ():
    assert len({request_ids.new() for _ in range(1000)}) == 1000


@pytest.fixture
def client(pipeline):
    return web.create_app(web.Loaded(ServingModel(MODEL, make_predictor(pipeline)))).test_client()


@pytest.mark.parametrize(
    ("headers", "echoed"),
    [
        ({"X-Request-ID": "client-7"}, "client-7"),
        ({}, None),
        ({"X-Request-ID": "x" * 129}, None),
        ({"X-Request-ID": "caf\u00e9"}, None),
    ],
    ids=["sent", "absent", "too long", "unicode"],
)
def test_the_answer_and_the_log_line_carry_the_requests_id(client, caplog, headers, echoed):
    with caplog.at_level(logging.INFO, logger="ride_duration.online.web"):
        response = client.post("/predict", json=RIDE, headers=headers)
    assert response.status_code == 200
    answered = response.headers["X-Request-ID"]
    assert answered == echoed if echoed else MADE.fullmatch(answered)
    [line] = [r.getMessage() for r in caplog.records if r.name == "ride_duration.online.web"]
    assert json.loads(line)["request_id"] == answered


def test_every_answer_carries_a_request_id_refusals_too(client):
    for response in (
        client.post("/predict", json={"PULocationID": 1}),
        client.get("/no-such-page"),
        client.get("/predict"),
        client.get("/health"),
    ):
        assert MADE.fullmatch(response.headers["X-Request-ID"]), response.status_code

"""The web worker's request reader (`online.reading`): when a request is whole, or refused.

The worker itself runs under a real gunicorn in tests/integration/test_web.py; here the reader
is fed requests in pieces, as slow and lying clients send them.
"""

from __future__ import annotations

import pytest

from ride_duration.online.reading import MAX_HEADER_BYTES, Reading

POST = b"POST /predict HTTP/1.1\r\nHost: x\r\n"


def fed(pieces: list[bytes], max_body: int = 1000) -> list[int | str | None]:
    reading = Reading(deadline=0.0, max_body=max_body)
    return [reading.feed(piece) for piece in pieces]


@pytest.mark.parametrize(
    ("pieces", "answers"),
    [
        ([b"GET /health HTTP/1.1\r\n", b"Host: x\r\n\r\n"], [None, "whole"]),
        ([POST + b"Content-Length: 4\r\n\r\n", b"ab", b"cd"], [None, None, "whole"]),
        ([POST + b"Content-Length: 4\r\n\r\nabcd"], ["whole"]),
        (
            [POST + b"Transfer-Encoding: chunked\r\n\r\n", b"2\r\nab\r\n", b"0\r\n\r\n"],
            [None, None, "whole"],
        ),
        ([POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\n\r\n"], ["whole"]),
        # What gunicorn's parser refuses (a 400) is handed over at once, unread.
        ([POST + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\n"], ["whole"]),
        ([POST + b"Content-Length: four\r\n\r\n"], ["whole"]),
        ([POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"], ["whole"]),
        ([POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"], ["whole"]),
    ],
)
def test_a_request_is_whole_once_its_headers_and_body_are_in(pieces, answers):
    assert fed(pieces) == answers


@pytest.mark.parametrize(
    ("pieces", "status"),
    [
        ([POST + b"Content-Length: 1001\r\n\r\n"], 413),
        ([POST + b"Transfer-Encoding: chunked\r\n\r\n", b"3e9\r\n"], 413),
        ([POST + b"X: " + b"a" * MAX_HEADER_BYTES], 431),
        ([POST + b"X: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"], 431),
    ],
)
def test_an_oversized_request_is_refused_before_it_is_read(pieces, status):
    assert fed(pieces)[-1] == status


def test_a_lying_client_never_makes_a_request_whole():
    answers = fed([POST + b"Content-Length: 100\r\n\r\n", b"x" * 99])
    assert answers == [None, None]


def test_an_expect_100_continue_is_answered_once_and_dropped_from_the_request():
    reading = Reading(deadline=0.0, max_body=1000)
    head = POST + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    assert reading.feed(head) is None
    assert reading.wants_continue()
    reading.continued = True
    assert not reading.wants_continue()
    assert reading.feed(b"ok") == "whole"
    assert reading.request() == POST + b"Content-Length: 2\r\n\r\nok"

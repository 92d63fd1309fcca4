"""The web service as it runs: gunicorn started as docs/web.md says, on a model in MLflow on S3.

gunicorn runs from the project folder (so gunicorn.conf.py applies), bound to 127.0.0.1 on a
fresh port, with the session's tracking server and moto S3; each test stops what it started.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pytest

from tests.conftest import REPO
from tests.integration.conftest import LINEAR_MODEL, Install, Services, Trained, web_service
from tests.support.rides import as_rides, prepared
from tests.support.servers import free_port, refused_url

COURSE_RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


def minutes(durations: object) -> list[float]:
    """Batch's durations as the online modes answer them: to two decimals of a minute."""
    return [round(float(duration), 2) for duration in durations]


@dataclass(frozen=True)
class Web:
    """A running web service and its log."""

    url: str
    log: Path

    def call(self, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if data is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


@contextmanager
def serving(install: Install, env: dict[str, str], log: Path) -> Iterator[Web]:
    with web_service(install, env, log) as (_, port):
        yield Web(f"http://127.0.0.1:{port}", log)


def _download_uri(services: Services, trained: Trained) -> str:
    mlflow.set_tracking_uri(services.tracking_uri)
    return mlflow.MlflowClient().get_model_version_download_uri("ride-duration", trained.version)


WORKERS, THREADS, CLIENT_TIMEOUT = 2, 4, 3


@pytest.fixture(scope="module")
def web(services: Services, trained: Trained, install: Install, tmp_path_factory) -> Iterator[Web]:
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    env = {
        **services.env,
        "MODEL_URI": "models:/ride-duration@production",
        "WEB_WORKERS": str(WORKERS),
        "WEB_THREADS": str(THREADS),
        "WEB_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT),
    }
    with serving(install, env, log) as running:
        yield running


@pytest.fixture(scope="module")
def linear_web(services: Services, trained_linear: Trained, install: Install, tmp_path_factory):
    """The web service on the linear baseline, from each install: its compiled form."""
    log = tmp_path_factory.mktemp("linear-web") / "gunicorn.log"
    env = {**services.env, "MODEL_URI": f"models:/{LINEAR_MODEL}@production"}
    with serving(install, env, log) as running:
        yield running


def exchange(web: Web, request: bytes, pause: float = 0, pieces: int = 1) -> tuple[int, bytes]:
    """Send raw bytes (in `pieces`, `pause` seconds apart) and read the answer: its status and
    body. The server must answer (or close) within the client timeout and a few seconds."""
    host, port = web.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT + 10) as client:
        size = -(-len(request) // pieces)
        try:
            for start in range(0, len(request), size):
                client.sendall(request[start : start + size])
                time.sleep(pause)
        except OSError:
            pass  # the server may refuse and close before everything is sent
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.partition(b"\r\n\r\n")[2]


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


RIDE_JSON = b'{"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66'
HOSTILE = [
    (
        "a NaN location",
        post("/predict", b'{"PULocationID": NaN, "DOLocationID": 1, "trip_distance": 1}'),
        400,
    ),
    (
        "a 'nan' location",
        post("/predict", b'{"PULocationID": "nan", "DOLocationID": 1, "trip_distance": 1}'),
        400,
    ),
    (
        "a distance of 1e39",
        post("/predict", b'{"PULocationID": 1, "DOLocationID": 1, "trip_distance": 1e39}'),
        400,
    ),
    (
        "a distance of 1e308 in a batch",
        post(
            "/predict/batch",
            b'{"rides": [' + RIDE_JSON + b'}, {"PULocationID": 1, "DOLocationID": 1, '
            b'"trip_distance": 1e308}]}',
        ),
        400,
    ),
    ("a body nested 100,000 deep", post("/predict", b"[" * 100_000), 400),
    ("an object nested 100,000 deep", post("/predict", b'{"a": ' * 100_000), 400),
    (
        "a ride id of 301 digits",
        post("/predict", RIDE_JSON + b', "ride_id": 1' + b"0" * 300 + b"}"),
        400,
    ),
    (
        "a body shorter than its length",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + RIDE_JSON,
        408,
    ),
    ("headers that never end", b"POST /predict HTTP/1.1\r\nHost: x\r\n", 408),
    (
        "a body larger than 1 MiB announced",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\nx",
        413,
    ),
    (
        "headers larger than 64 KiB",
        b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n",
        431,
    ),
    (
        "a length that is no number",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
    ),
    (
        "chunks that are no chunks",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + RIDE_JSON + b"}\r\n",
        400,
    ),
    (
        "both a length and chunks",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3"
        b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("a request line that is none", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 400),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("case", "request_bytes", "status"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_request_gets_its_4xx_in_bounded_time_never_a_500(
    web: Web, case, request_bytes, status
):
    started = time.monotonic()
    code, body = exchange(web, request_bytes)
    assert code == status, (case, body[:300])
    assert time.monotonic() - started < CLIENT_TIMEOUT + 5
    if body.startswith(b"{"):
        assert len(json.loads(body)["error"]) < 300


def test_trickled_headers_get_a_408_after_the_client_timeout(web: Web):
    """A header line every second: each arrives well within any read timeout, the whole never
    within the client timeout."""
    request = b"GET /health HTTP/1.1\r\n" + b"".join(f"X-{i}: y\r\n".encode() for i in range(9))
    code, _ = exchange(web, request + b"\r\n", pause=1.0, pieces=10)
    assert code == 408


def test_chunked_and_expect_continue_requests_are_answered(web: Web, batch_path):
    body = b'{"rides": [' + RIDE_JSON + b"}]}"
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:])
    )
    request = (
        b"POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
    )
    code, answer = exchange(web, request, pause=0.2, pieces=5)
    assert code == 200
    assert json.loads(answer)["predictions"][0]["duration"] == minutes(batch_path([COURSE_RIDE]))[0]
    code, answer = exchange(web, post("/predict", RIDE_JSON + b"}", "Expect: 100-continue\r\n"))
    assert code == 100  # then the answer: 100 Continue first, as the client asked
    assert b"HTTP/1.1 200" in answer


def test_slow_clients_hold_no_thread_health_and_predict_still_answer(web: Web):
    """Twice as many slow connections as the service has threads, each half-way through its
    request: they wait in the workers' event loops, and every thread is free."""
    host, port = web.url.removeprefix("http://").split(":")
    slow = []
    try:
        for i in range(2 * WORKERS * THREADS):
            client = socket.create_connection((host, int(port)), timeout=10)
            client.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                if i % 2
                else b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"
            )
            slow.append(client)
        time.sleep(0.5)  # every slow request has reached a worker
        for path, body in (("/health", None), ("/predict", COURSE_RIDE)):
            started = time.monotonic()
            status, _ = web.call(path, body)
            assert status == 200
            assert time.monotonic() - started < 1.0, f"{path} waited behind slow clients"
    finally:
        for client in slow:
            client.close()


def test_ready_names_the_version_the_alias_pointed_to(web: Web, trained: Trained):
    assert web.call("/ready") == (
        200,
        {
            "status": "ready",
            "model_version": f"ride-duration/{trained.version}",
            "run_id": trained.run_id,
        },
    )
    assert web.call("/health") == (200, {"status": "alive"})


def test_the_course_payload_answers_what_batch_scoring_gives(web: Web, trained, batch_path):
    status, answer = web.call("/predict", COURSE_RIDE)
    assert status == 200
    assert answer["model_version"] == f"ride-duration/{trained.version}"
    assert answer["run_id"] == trained.run_id
    assert answer["duration"] == minutes(batch_path([COURSE_RIDE]))[0]  # bit for bit, rounded


def test_a_batch_of_rides_answers_in_order(web: Web, batch_path):
    rides = as_rides(prepared(2021, 3, 400).slice(0, 300))
    status, answer = web.call("/predict/batch", {"rides": rides})
    assert status == 200
    durations = [p["duration"] for p in answer["predictions"]]
    assert np.array(durations).tobytes() == np.array(minutes(batch_path(rides))).tobytes()


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/predict", {"DOLocationID": 205, "trip_distance": 3.66}, 400, "PULocationID"),
        ("/predict", {**COURSE_RIDE, "trip_distance": -1}, 400, "trip_distance"),
        ("/predict", [COURSE_RIDE], 400, None),
        ("/predict/batch", {"rides": [COURSE_RIDE] * 1001}, 413, "rides"),
    ],
)
def test_bad_requests_get_json_errors_over_http(web: Web, path, body, status, field):
    code, answer = web.call(path, body)
    assert (code, answer["field"]) == (status, field)


def test_eight_clients_get_two_thousand_correct_answers(web: Web, batch_path):
    rides = as_rides(prepared(2021, 4, 300).slice(0, 250))
    expected = minutes(batch_path(rides))

    def ask(i: int) -> tuple[int, float, float]:
        status, answer = web.call("/predict", {**rides[i % len(rides)], "ride_id": i})
        assert answer["ride_id"] == i
        return status, answer["duration"], expected[i % len(rides)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(2_000)))
    assert {status for status, _, _ in results} == {200}
    assert [r[1] for r in results] == [r[2] for r in results]
    lines = [line for line in web.log.read_text().splitlines() if '"path": "/predict"' in line]
    assert len(lines) >= 2_000  # one structured line per request


def test_with_the_tracking_server_down_it_serves_model_location(
    services: Services, trained: Trained, install: Install, tmp_path: Path, batch_path
):
    env = {
        **services.env,
        "MLFLOW_TRACKING_URI": refused_url(),  # nothing listens there
        "MODEL_LOCATION": _download_uri(services, trained),
        "TRUSTED_MODEL_PREFIXES": "models:/,runs:/,s3://mlflow-artifacts/",
    }
    with serving(install, env, tmp_path / "gunicorn.log") as web:
        status, answer = web.call("/predict", COURSE_RIDE)
    assert status == 200
    assert answer["run_id"] == trained.run_id
    assert answer["model_version"] == trained.run_id  # no registry: the run names the model
    assert answer["duration"] == minutes(batch_path([COURSE_RIDE]))[0]  # bit for bit, rounded
    log = (tmp_path / "gunicorn.log").read_text()
    assert "did not answer" in log
    assert "loading MODEL_LOCATION" in log


def test_with_no_model_reachable_it_exits_with_one_line(
    services: Services, install: Install, tmp_path: Path
):
    env = {**services.env, "MLFLOW_TRACKING_URI": refused_url()}
    result = subprocess.run(
        install.web_command(free_port()),
        env=install.env(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: MLflow tracking server {env['MLFLOW_TRACKING_URI']} did not answer (Connection "
        "refused): start it or set MLFLOW_TRACKING_URI, or set MODEL_LOCATION to the model's "
        "artifact location"
    ]
    assert "Traceback" not in result.stderr


def test_a_linear_model_is_served_as_scikit_learn_answers_it(
    linear_web: Web, trained_linear: Trained, linear_sklearn
):
    """From the serving install too: the compiled linear model needs no scikit-learn."""
    status, ready = linear_web.call("/ready")
    assert status == 200
    assert ready["model_version"] == f"{LINEAR_MODEL}/{trained_linear.version}"
    rides = [*as_rides(prepared(2021, 3, 400).slice(0, 300)), COURSE_RIDE]
    rides.append({"PULocationID": None, "DOLocationID": 43, "trip_distance": 0.0})
    status, answer = linear_web.call("/predict/batch", {"rides": rides})
    assert status == 200
    durations = [p["duration"] for p in answer["predictions"]]
    assert np.array(durations).tobytes() == np.array(minutes(linear_sklearn(rides))).tobytes()

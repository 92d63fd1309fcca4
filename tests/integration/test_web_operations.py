"""The web service as operators run it, on the real gunicorn, from each install: `/metrics`
added up across workers, request ids, `X-Model-Version` on every answer, and the drain on
SIGTERM (`online.metrics`, `online.request_ids`, `online.worker`, gunicorn.conf.py)."""

from __future__ import annotations

import json
import re
import signal
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

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Install, Services, Trained, web_service

RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}
MADE_ID = re.compile(r"[0-9a-f]{32}")
CLIENT_TIMEOUT = 2


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass(frozen=True)
class Service:
    """A gunicorn master serving on `port`, and its log."""

    process: subprocess.Popen
    port: int
    log: Path

    def call(self, path: str, body: object = None, headers: dict | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
            method="GET" if data is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Answer(response.status, _lower(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, _lower(error.headers), error.read())

    def raw(self, request: bytes) -> Answer:
        """Send raw bytes; the answer as the server wrote it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT + 10) as c:
            c.sendall(request)
            return _read_answer(c)


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _read_answer(client: socket.socket) -> Answer:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return Answer(int(lines[0].split(" ")[1]), _lower(headers), body)


@contextmanager
def started(install: Install, env: dict[str, str], log: Path) -> Iterator[Service]:
    """`gunicorn --bind 127.0.0.1:PORT predict:app` from `install`, as the docs run it."""
    with web_service(install, env, log) as (process, port):
        yield Service(process, port, log)


def service_env(services: Services, **settings: str) -> dict[str, str]:
    return {
        **services.env,
        "MODEL_URI": "models:/ride-duration@production",
        "WEB_WORKERS": "2",
        "WEB_THREADS": "4",
        "WEB_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT),
        **settings,
    }


def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = service.call("/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def summed(samples, name: str, **wanted: str) -> float:
    return sum(
        value
        for (found, labels), value in samples.items()
        if found == name and all(dict(labels).get(k) == v for k, v in wanted.items())
    )


@pytest.mark.timeout(300)
def test_a_thousand_requests_to_two_workers_are_counted_exactly_once(
    services: Services, trained: Trained, install: Install, tmp_path: Path
):
    """700 rides alone, 200 batches of 3, 100 refused: every scrape, whichever worker answers
    it, adds up both workers' files. The operator's folder is emptied at start."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"an earlier run's counts")
    env = service_env(services, PROMETHEUS_MULTIPROC_DIR=str(folder))
    bodies = [("/predict", RIDE)] * 700 + [("/predict/batch", {"rides": [RIDE] * 3})] * 200
    bodies += [("/predict", {**RIDE, "trip_distance": -1})] * 100
    with started(install, env, tmp_path / "gunicorn.log") as service:
        assert not (folder / "counter_999999.db").exists()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda pb: service.call(*pb).status, bodies))
        scrapes = [scrape(service) for _ in range(6)]
        pids = {re.search(r"_(\d+)\.db$", p.name).group(1) for p in folder.glob("counter_*")}
    assert statuses.count(200) == 900
    assert statuses.count(400) == 100
    assert len(pids) >= 2, "both workers wrote counts"  # (the master's, of its zeros, too)
    version = f"ride-duration/{trained.version}"
    for samples in scrapes:
        requests = "ride_duration_web_requests_total"
        predicted = sum(
            summed(samples, requests, endpoint=e) for e in ("/predict", "/predict/batch")
        )
        assert predicted == 1000
        assert summed(samples, requests, endpoint="/predict", status="200") == 700
        assert summed(samples, requests, endpoint="/predict/batch", status="200") == 200
        assert summed(samples, requests, endpoint="/predict", status="400") == 100
        assert summed(samples, "ride_duration_web_rides_refused_total", rule="trip_distance") == 100
        rides = "ride_duration_web_rides_per_request"
        assert summed(samples, f"{rides}_count") == 900
        assert summed(samples, f"{rides}_sum") == 700 + 200 * 3
        latency = "ride_duration_web_request_duration_seconds_count"
        assert summed(samples, latency, endpoint="/predict") == 800
        info = "ride_duration_web_model_info"
        assert summed(samples, info, model_version=version, run_id=trained.run_id) == 1
    # the scrapes count themselves, apart: each shows those before it
    assert summed(scrapes[-1], "ride_duration_web_requests_total", endpoint="/metrics") == 5


@pytest.mark.timeout(300)
def test_sigterm_drains_ready_503_at_once_predictions_go_on_then_it_exits(
    services: Services, trained: Trained, install: Install, tmp_path: Path
):
    drain = 3
    # A client timeout past the drain: what the drain's end refuses is its own doing.
    env = service_env(services, WEB_DRAIN_SECONDS=str(drain), WEB_CLIENT_TIMEOUT_SECONDS="10")
    body = json.dumps(RIDE).encode()
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with started(install, env, tmp_path / "gunicorn.log") as service:
        # In flight when SIGTERM comes: half a request that ends during the drain, and one
        # that never ends (the drain's end refuses it, not the client timeout).
        finishing = socket.create_connection(("127.0.0.1", service.port), timeout=20)
        finishing.sendall(head + body[:10])
        unfinished = socket.create_connection(("127.0.0.1", service.port), timeout=20)
        unfinished.sendall(head + body[:10])
        time.sleep(0.3)  # both have reached a worker
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)  # the master, as Kubernetes stops a pod
        ready: list[tuple[float, Answer]] = []
        while (now := time.monotonic() - signalled) < 0.5:
            ready.append((now, service.call("/ready")))
        predictions = []
        while time.monotonic() - signalled < drain - 1:
            predictions.append(service.call("/predict", RIDE))
        finishing.sendall(body[10:])
        finished = _read_answer(finishing)
        service.process.wait(timeout=drain + 10)
        exited = time.monotonic() - signalled
        refused = _read_answer(unfinished)
    first_503 = next(at for at, answer in ready if answer.status == 503)
    assert first_503 < 0.1, [(round(at, 3), answer.status) for at, answer in ready]
    assert all(answer.status == 503 for at, answer in ready if at >= 0.1)
    version = f"ride-duration/{trained.version}"
    assert ready[-1][1].json()["status"] == "draining"
    assert ready[-1][1].headers["x-model-version"] == version
    assert predictions
    assert {answer.status for answer in predictions} == {200}
    assert predictions[-1].headers["connection"] == "close"  # the client's next goes elsewhere
    assert finished.status == 200
    assert finished.json()["model_version"] == version
    assert refused.status == 503
    assert refused.json()["error"] == "the service is stopping: send the request again"
    assert refused.headers["x-model-version"] == version
    assert drain <= exited < drain + 5, exited  # gunicorn's graceful_timeout: the drain and 5 s
    assert service.process.returncode == 0
    log = service.log.read_text()
    assert log.count("SIGTERM: draining") == 2  # each worker
    assert "SIGKILL" not in log
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def operated(services: Services, trained: Trained, install: Install, tmp_path_factory):
    log = tmp_path_factory.mktemp("web-operations") / "gunicorn.log"
    with started(install, service_env(services), log) as service:
        yield service


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        (b"X-Request-ID: order-77:a.b_c\r\n", "order-77:a.b_c"),
        (b"", None),
        (b"X-Request-ID: " + b"a" * 129 + b"\r\n", None),
        (b"X-Request-ID: caf\xc3\xa9\r\n", None),
        (b"X-Request-ID: abc def\r\n", None),
        (b"X-Request-ID: abc\r\nX-Request-ID: def\r\n", None),
    ],
    ids=["kept", "absent", "too long", "unicode", "a space", "twice"],
)
def test_a_request_id_is_echoed_when_plain_else_made(operated: Service, sent, echoed):
    body = json.dumps(RIDE).encode()
    answer = operated.raw(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + sent
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    assert answer.status == 200
    given = answer.headers["x-request-id"]
    assert given == echoed if echoed else MADE_ID.fullmatch(given)
    logged = [json.loads(line[line.index("{") :]) for line in _log_lines(operated, given)]
    assert [entry["path"] for entry in logged] == ["/predict"]


def _log_lines(service: Service, request_id: str) -> list[str]:
    for _ in range(50):  # the worker writes its line as it answers
        lines = [line for line in service.log.read_text().splitlines() if request_id in line]
        if lines:
            return lines
        time.sleep(0.1)
    return []


@pytest.mark.parametrize(
    "line",
    [b"X-Request-ID: a\rb\r\n", b"X-Request-ID: a\x00b\r\n", b"X-Request-ID: a\nX-Injected: 1\r\n"],
    ids=["a bare CR", "a NUL", "a bare LF"],
)
def test_a_request_id_with_control_characters_never_reaches_an_answer_or_a_log(
    operated: Service, line
):
    """gunicorn's parser refuses most of these itself (400); whatever answers, the answer has a
    made id and the model version, and no header the client tried to inject."""
    answer = operated.raw(b"GET /ready HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
    assert answer.status in (200, 400)
    assert MADE_ID.fullmatch(answer.headers["x-request-id"])
    assert "x-injected" not in answer.headers
    assert answer.headers["x-model-version"].startswith("ride-duration/")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n[]",
            400,
        ),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", 413),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{", 408),
        (b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n", 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 400),  # gunicorn's own refusal
    ],
    ids=["ready", "app 400", "404", "405", "worker 413", "worker 408", "worker 431", "parser 400"],
)
def test_every_answer_names_the_model_version_and_the_request(
    operated: Service, trained: Trained, request_bytes, status
):
    answer = operated.raw(request_bytes)
    assert answer.status == status
    assert answer.headers["x-model-version"] == f"ride-duration/{trained.version}"
    assert MADE_ID.fullmatch(answer.headers["x-request-id"])


def test_refusals_the_app_never_saw_are_counted_as_unread(operated: Service):
    before = summed(scrape(operated), "ride_duration_web_requests_total", endpoint="unread")
    operated.raw(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
    operated.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n")
    samples = scrape(operated)
    assert summed(samples, "ride_duration_web_requests_total", endpoint="unread") == before + 2

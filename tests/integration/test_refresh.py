"""A new model without downtime, on the real gunicorn, from each install (`model.refresh`,
MODEL_REFRESH_SECONDS): the alias moves under load, a version that does not load is refused
while the old one serves, and a rolling restart behind a load balancer that follows `/ready`
loses no request. The model is the session's `refreshable` (integration conftest); the
consumer's refresh is tested in test_stream.py.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    REFRESHED,
    RIDE,
    Install,
    Refreshable,
    Services,
    move_alias,
)
from tests.integration.test_web_operations import scrape as scrape_web
from tests.integration.test_web_operations import service_env, started, summed
from tests.support.servers import wait_for

URI = f"models:/{REFRESHED}@production"
REFRESH = 2
RATE = 200  # requests a second, all clients together
CLIENTS = 8


@dataclass
class Answered:
    """One request of the load: when it was sent, to which instance, and what came back."""

    sent: float
    instance: str
    status: int | None = None
    header: str | None = None
    body: dict | None = None
    error: str | None = None


class Balancer:
    """A load balancer as Kubernetes makes one of a Service: the instances whose `/ready`
    answered 200 at the last probe (every 0.25 s) take the requests, in turn."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self.ready: list[str] = []
        self.turn = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.prober = threading.Thread(target=self._probe, daemon=True)
        self.prober.start()

    def add(self, name: str, port: int) -> None:
        with self.lock:
            self.ports[name] = port

    def pick(self) -> tuple[str, int] | None:
        with self.lock:
            if not self.ready:
                return None
            self.turn += 1
            name = self.ready[self.turn % len(self.ready)]
            return name, self.ports[name]

    def _probe(self) -> None:
        while not self.stopped.wait(0.25):
            with self.lock:
                ports = dict(self.ports)
            ready = [name for name, port in ports.items() if _status(port, "GET", "/ready") == 200]
            with self.lock:
                self.ready = ready

    def close(self) -> None:
        self.stopped.set()
        self.prober.join()


def _status(port: int, method: str, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request(method, path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


class Load:
    """RATE requests a second from CLIENTS threads, each on a fresh connection to the instance
    the balancer picks; every request is recorded."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.answered: list[Answered] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def _client(self, number: int) -> None:
        body = json.dumps(RIDE)
        interval = CLIENTS / RATE
        due = self.started + number * interval / CLIENTS
        while not self.stopped.is_set():
            time.sleep(max(due - time.monotonic(), 0))
            due += interval
            picked = self.balancer.pick()
            answer = Answered(time.monotonic(), picked[0] if picked else "none")
            self.answered.append(answer)
            if picked is None:
                answer.error = "no instance ready"
                continue
            connection = http.client.HTTPConnection("127.0.0.1", picked[1], timeout=30)
            try:
                connection.request(
                    "POST", "/predict", body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                answer.status = response.status
                answer.header = response.getheader("X-Model-Version")
                answer.body = json.loads(response.read())
            except (OSError, ValueError) as error:
                answer.error = repr(error)
            finally:
                connection.close()

    def stop(self) -> list[Answered]:
        self.stopped.set()
        for thread in self.threads:
            thread.join()
        return self.answered


@pytest.mark.timeout(600)
def test_an_alias_move_and_a_rolling_restart_under_load_fail_no_request(
    services: Services, refreshable: Refreshable, install: Install, tmp_path: Path
):
    """Two instances of 2 workers behind a balancer that follows /ready, 200 requests a second:
    the alias moves from the forest to the linear model, then instance A is stopped (SIGTERM,
    the drain) and started again, as a rolling restart does."""
    move_alias(services, refreshable.forest)
    env = service_env(services, MODEL_URI=URI, MODEL_REFRESH_SECONDS=str(REFRESH))
    old, new = f"{REFRESHED}/{refreshable.forest}", f"{REFRESHED}/{refreshable.linear}"
    balancer = Balancer()
    with ExitStack() as instances:
        a = instances.enter_context(started(install, env, tmp_path / "a.log"))
        b = instances.enter_context(started(install, env, tmp_path / "b.log"))
        balancer.add("a", a.port)
        balancer.add("b", b.port)
        wait_for(lambda: len(balancer.ready) == 2, 10, "both instances in the balancer")
        load = Load(balancer)
        try:
            time.sleep(3)
            moved = time.monotonic()
            move_alias(services, refreshable.linear)
            # every worker of both instances switched: the balancer's answers are all new
            wait_for(
                lambda: (
                    [x.body["model_version"] for x in load.answered[-40:] if x.body]
                    == [new] * len([x for x in load.answered[-40:] if x.body])
                ),
                REFRESH + 30,
                "every answer from the new version",
            )
            time.sleep(1)
            signalled = time.monotonic()
            a.process.send_signal(signal.SIGTERM)  # the pod deleted: drained, then gone
            a.process.wait(timeout=30)
            exited = time.monotonic()
            restarted = instances.enter_context(started(install, env, tmp_path / "a2.log"))
            balancer.add("a", restarted.port)
            wait_for(lambda: "a" in balancer.ready, 30, "the restarted instance back in")
            back = time.monotonic()
            time.sleep(3)
        finally:
            answered = load.stop()
            balancer.close()
        seconds = time.monotonic() - load.started
        b_metrics = scrape_web(b)
        b_log, a_log = b.log.read_text(), a.log.read_text()
    failed = [x for x in answered if x.error or x.status != 200]
    assert not failed, failed[:5]
    assert len(answered) > 0.5 * RATE * seconds, (len(answered), seconds)  # the load was there
    for x in answered:  # each answer is one version's, whole
        assert x.header == x.body["model_version"] in (old, new), x
        assert x.body["duration"] == refreshable.minutes[x.header], x
    first_new = min(x.sent for x in answered if x.header == new)
    assert first_new - moved <= REFRESH + 5
    assert all(x.header == new for x in answered if x.sent > moved + REFRESH + 5)
    assert any(x.header == old for x in answered if x.sent < moved)
    # instance a's drain served what reached it after SIGTERM; its new process served new
    assert any(x.instance == "a" and signalled < x.sent < exited for x in answered)
    assert any(x.instance == "a" and x.sent > back for x in answered)
    # b's two workers switched once each, and its scrape says which version it serves
    assert summed(b_metrics, "ride_duration_web_model_refreshes_total", outcome="switched") == 2
    assert summed(b_metrics, "ride_duration_web_model_refreshes_total", outcome="refused") == 0
    assert summed(b_metrics, "ride_duration_web_model_info", model_version=new) == 1
    assert summed(b_metrics, "ride_duration_web_model_info", model_version=old) == 0
    switched = f"model refresh: {URI} now names {new}; serving it (was {old})"
    assert b_log.count(switched) == 2, b_log[-3000:]
    assert a_log.count("SIGTERM: draining") == 2
    for log in (a_log, b_log):
        assert "Traceback" not in log


@pytest.mark.timeout(300)
def test_a_version_that_does_not_load_is_refused_and_the_old_one_serves_on(
    services: Services, refreshable: Refreshable, install: Install, tmp_path: Path
):
    move_alias(services, refreshable.forest)
    env = service_env(services, MODEL_URI=URI, MODEL_REFRESH_SECONDS="1")
    old, empty = f"{REFRESHED}/{refreshable.forest}", f"{REFRESHED}/{refreshable.empty}"
    with started(install, env, tmp_path / "gunicorn.log") as web:
        move_alias(services, refreshable.empty)
        refused = "ride_duration_web_model_refreshes_total"
        wait_for(lambda: summed(scrape_web(web), refused, outcome="refused") == 2, 30, "refused")
        time.sleep(2.5)  # more looks: the refused version is not loaded again
        answers = [web.call("/predict", RIDE) for _ in range(20)]
        ready = web.call("/ready")
        samples = scrape_web(web)
        move_alias(services, refreshable.linear)  # the next version is tried, and served
        wait_for(
            lambda: (
                web.call("/predict", RIDE).headers["x-model-version"]
                == f"{REFRESHED}/{refreshable.linear}"
            ),
            30,
            "the next version served",
        )
        log = web.log.read_text()
    assert {(a.status, a.headers["x-model-version"]) for a in answers} == {(200, old)}
    assert {a.json()["duration"] for a in answers} == {refreshable.minutes[old]}
    assert ready.status == 200
    assert ready.json()["model_version"] == old
    assert summed(samples, refused, outcome="refused") == 2  # once per worker, not per look
    assert summed(samples, "ride_duration_web_model_info", model_version=old) == 1
    lines = [line for line in log.splitlines() if "which is refused" in line]
    assert len(lines) == 2, log[-3000:]
    assert all(f"{URI} now names {empty}, which is refused (" in line for line in lines)
    assert all(line.endswith(f"still serving {old}") for line in lines)
    assert "Traceback" not in log

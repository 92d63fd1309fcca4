"""tests/support/lambda_runtime.py against the real awslambdaric, with handlers the tests write."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.support.lambda_runtime import (
    FunctionExited,
    InitError,
    InvocationTimeout,
    LambdaRuntime,
    run_function,
)

# The function processes run this interpreter, so it is the one that needs awslambdaric.
pytest.importorskip("awslambdaric", reason="awslambdaric is not installed in this environment")

Start = Callable[..., AbstractContextManager]

FUNCTIONS = """
import os
import sys
import time

CALLS = []  # module state: kept while the execution environment stays warm


def counting(event, context):
    CALLS.append(context.aws_request_id)
    return {"event": event, "calls": len(CALLS), "pid": os.getpid(),
            "remaining_ms": context.get_remaining_time_in_millis()}


def failing(event, context):
    raise ValueError(f"bad record {event['n']}")


def recursing(event, context):
    sys.setrecursionlimit(4000)  # a traceback this deep makes an X-Ray header of ~250 KB

    def down(depth):
        return down(depth + 1)

    return down(0)


def sleeping(event, context):
    time.sleep(event["seconds"])


def dying(event, context):
    os._exit(3)
"""


@pytest.fixture
def runtime() -> Iterator[LambdaRuntime]:
    with LambdaRuntime(init_timeout=15) as runtime:
        yield runtime


@pytest.fixture
def start(runtime: LambdaRuntime, tmp_path: Path) -> Start:
    """Start a handler of the test's task root against the test's runtime."""
    root = tmp_path / "task"
    root.mkdir()
    (root / "functions.py").write_text(FUNCTIONS)
    (root / "broken.py").write_text("import os\nMODEL = os.environ['NO_SUCH_VARIABLE']\n")

    def start(handler: str, **kwargs: object) -> AbstractContextManager:
        return run_function(runtime, handler, cwd=root, log=tmp_path / "function.log", **kwargs)

    return start


def test_one_process_answers_invocations_in_order_keeping_its_state(runtime, start):
    with start("functions.counting") as process:
        results = [runtime.invoke({"n": n}, timeout=7) for n in range(3)]

    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.response["event"]["n"] for r in results] == [0, 1, 2]
    assert [r.response["calls"] for r in results] == [1, 2, 3]
    assert {r.response["pid"] for r in results} == {process.pid}
    assert 5_000 < results[0].response["remaining_ms"] <= 7_000  # the deadline is the timeout


def test_a_handler_that_raises_posts_an_error_and_stays_warm(runtime, start):
    with start("functions.failing"):
        first, second = (runtime.invoke({"n": n}, timeout=5) for n in (49, 50))

    assert not first.ok
    assert first.error["errorType"] == "ValueError"
    assert first.error["errorMessage"] == "bad record 49"
    assert second.error["errorMessage"] == "bad record 50"


def test_a_deep_traceback_is_reported_despite_its_long_xray_header(runtime, start):
    with start("functions.recursing"):
        results = [runtime.invoke({}, timeout=10) for _ in range(2)]

    assert [r.error["errorType"] for r in results] == ["RecursionError", "RecursionError"]


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("broken.handler", "KeyError"),
        ("functions.no_such_handler", "Runtime.HandlerNotFound"),
        ("no_such_module.handler", "Runtime.ImportModuleError"),
    ],
)
def test_a_function_that_cannot_start_is_an_init_error(runtime, start, handler, error_type):
    with pytest.raises(InitError, match=error_type), start(handler):
        pass
    assert runtime.init_error_type == error_type or runtime.init_error["errorType"] == error_type


def test_a_handler_slower_than_its_timeout_raises_and_ends_the_environment(runtime, start):
    with start("functions.sleeping") as process:
        started = time.monotonic()
        with pytest.raises(InvocationTimeout, match=r"within 0\.5 s"):
            runtime.invoke({"seconds": 30}, timeout=0.5)
        assert time.monotonic() - started < 10
        assert process.poll() is not None  # stopped, as Lambda resets a timed-out environment
        with pytest.raises(FunctionExited):
            runtime.invoke({"seconds": 0}, timeout=5)


def test_a_function_process_that_dies_fails_the_invocation_at_once(runtime, start):
    started = time.monotonic()
    with start("functions.dying"), pytest.raises(FunctionExited, match=r"exited \(3\)"):
        runtime.invoke({}, timeout=30)
    assert time.monotonic() - started < 10


def test_the_function_gets_lambdas_variables_and_the_callers_but_not_lambdas_from_the_caller(
    runtime, start, monkeypatch
):
    monkeypatch.setenv("AWS_LAMBDA_MAX_CONCURRENCY", "4")  # would switch the client's mode
    environment = {}
    with start("functions.counting", env={"MODEL_LOCATION": "here"}) as process:
        assert runtime.invoke({}, timeout=5).ok
        environment = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")

    assert b"MODEL_LOCATION=here" in environment
    assert f"AWS_LAMBDA_RUNTIME_API={runtime.address}".encode() in environment
    assert not any(line.startswith(b"AWS_LAMBDA_MAX_CONCURRENCY=") for line in environment)

"""tests/support/lambda_runtime.py against the real awslambdaric, with handlers the tests write."""

from __future__ import annotations

import json
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

BASIC = """
import os
import time

STARTED = time.time()  # module state: kept while the execution environment stays warm
CALLS = []


def lambda_handler(event, context):
    CALLS.append(context.aws_request_id)
    return {"event": event, "calls": len(CALLS), "started": STARTED, "pid": os.getpid()}


def context_handler(event, context):
    return {
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "custom": context.client_context.custom if context.client_context else None,
        "identity_id": context.identity.cognito_identity_id,
    }


def env_handler(event, context):
    return {name: os.environ.get(name) for name in event["names"]}


def failing_handler(event, context):
    raise ValueError(f"bad record {event['sequenceNumber']}")


def recursing_handler(event, context):
    import sys

    # A traceback this deep makes an X-Ray cause header of ~250 KB.
    sys.setrecursionlimit(4000)

    def down(depth):
        return down(depth + 1)

    return down(0)


def sleeping_handler(event, context):
    time.sleep(event["seconds"])
    return "awake"


def dying_handler(event, context):
    os._exit(3)


def big_handler(event, context):
    return "x" * event["size"]


def bytes_handler(event, context):
    return b"\\x00raw"
"""


@pytest.fixture
def runtime() -> Iterator[LambdaRuntime]:
    with LambdaRuntime(function_name="test-fn", memory_mb=256, init_timeout=15) as runtime:
        yield runtime


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "functions.py").write_text(BASIC)
    return root


@pytest.fixture
def start(runtime: LambdaRuntime, task_root: Path, tmp_path: Path) -> Start:
    """Start `functions.<name>` (or any handler) against the test's runtime."""

    def start(handler: str, **kwargs: object) -> AbstractContextManager:
        if "." not in handler:
            handler = f"functions.{handler}"
        return run_function(
            runtime, handler, cwd=task_root, log=tmp_path / "function.log", **kwargs
        )

    return start


def test_a_handler_returning_a_dict(runtime, start):
    with start("lambda_handler"):
        result = runtime.invoke({"Records": [{"n": 1}]}, timeout=5)

    assert result.ok, result.error
    assert result.error is None
    assert result.error_type is None
    assert result.response["event"] == {"Records": [{"n": 1}]}
    assert result.response["calls"] == 1
    assert result.content_type == "application/json"
    assert result.elapsed < 5


def test_the_context_carries_the_request_id_and_the_deadline(runtime, start, tmp_path):
    with start("context_handler"):
        by_timeout = runtime.invoke({}, timeout=7)
        deadline = int(time.time() * 1000) + 90_000
        by_deadline = runtime.invoke(
            {},
            timeout=5,
            deadline_ms=deadline,
            client_context={"custom": {"caller": "test"}},
            cognito_identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool"},
        )

    first, second = by_timeout.response, by_deadline.response
    assert first["request_id"] == by_timeout.request_id
    assert second["request_id"] == by_deadline.request_id != by_timeout.request_id
    # The deadline defaults to the moment the function took the event plus its timeout.
    assert 5_000 < first["remaining_ms"] <= 7_000
    assert by_deadline.deadline_ms == deadline
    assert 80_000 < second["remaining_ms"] <= 90_000
    assert first["function_name"] == "test-fn"
    assert first["function_version"] == "$LATEST"
    assert first["memory_limit_in_mb"] == "256"
    assert first["invoked_function_arn"] == runtime.function_arn
    assert first["invoked_function_arn"].endswith(":function:test-fn")
    assert first["log_group_name"] == "/aws/lambda/test-fn"
    assert "[$LATEST]" in first["log_stream_name"]
    assert first["trace_id"].startswith("Root=1-")
    assert first["custom"] is None
    assert second["custom"] == {"caller": "test"}
    assert second["identity_id"] == "id-1"


def test_a_handler_that_raises_posts_an_error_and_stays_warm(runtime, start, tmp_path):
    with start("failing_handler"):
        first = runtime.invoke({"sequenceNumber": "49"}, timeout=5)
        second = runtime.invoke({"sequenceNumber": "50"}, timeout=5)

    assert not first.ok
    assert first.response is None
    assert first.error["errorType"] == "ValueError"
    assert first.error["errorMessage"] == "bad record 49"
    assert first.error["requestId"] == first.request_id
    assert any("failing_handler" in line for line in first.error["stackTrace"])
    # awslambdaric names the type only in the document, not in the error-type header.
    assert first.error_type is None
    assert "lambda-runtime-function-xray-error-cause" in first.headers
    assert second.error["errorMessage"] == "bad record 50"
    assert "[ERROR] ValueError: bad record 49" in (tmp_path / "function.log").read_text()


def test_a_deep_traceback_is_reported_despite_its_long_xray_header(runtime, start):
    with start("recursing_handler"):
        result = runtime.invoke({}, timeout=10)
        after = runtime.invoke({}, timeout=10)

    assert result.error["errorType"] == "RecursionError"
    assert len(result.headers["lambda-runtime-function-xray-error-cause"]) > 65536
    assert after.error["errorType"] == "RecursionError"  # the function survived it


def test_a_module_failing_at_import_posts_an_init_error(runtime, start, task_root, tmp_path):
    (task_root / "broken.py").write_text(
        "import os\nMODEL_URI = os.environ['MODEL_URI']\n\ndef handler(event, context):\n"
        "    return MODEL_URI\n"
    )
    with pytest.raises(InitError) as caught, start("broken.handler"):
        pass

    assert caught.value.document["errorType"] == "KeyError"
    assert caught.value.document["errorMessage"] == "'MODEL_URI'"
    assert caught.value.error_type == "KeyError"
    assert "function.log" in str(caught.value)
    assert runtime.init_error == caught.value.document


def test_an_import_error_is_reported_on_invoke_too(runtime, start, task_root):
    (task_root / "missing.py").write_text("import no_such_package_here\n")
    with start("missing.handler", ready=False) as process:
        with pytest.raises(InitError, match=r"Runtime\.ImportModuleError") as caught:
            runtime.invoke({}, timeout=5)
        assert process.wait(timeout=5) == 1

    assert runtime.init_error_type == "Runtime.ImportModuleError"
    assert "No module named 'no_such_package_here'" in caught.value.document["errorMessage"]


def test_a_missing_handler_function_is_an_init_error(runtime, start):
    with pytest.raises(InitError), start("functions.no_such_handler"):
        pass

    assert runtime.init_error_type == "Runtime.HandlerNotFound"


def test_one_process_serves_invocations_in_order_keeping_module_state(runtime, start):
    with start("lambda_handler") as process:
        time.sleep(0.5)  # the function waits in its long poll meanwhile
        results = [runtime.invoke({"n": n}, timeout=5) for n in range(4)]

    assert [r.response["event"]["n"] for r in results] == [0, 1, 2, 3]
    assert [r.response["calls"] for r in results] == [1, 2, 3, 4]
    assert {r.response["started"] for r in results} == {results[0].response["started"]}
    assert {r.response["pid"] for r in results} == {process.pid}
    assert len({r.request_id for r in results}) == 4
    polls = [path for method, path, _ in runtime.requests if method == "GET"]
    assert len(polls) == 4  # answered ones; a fifth was waiting in its long poll at the end


def test_a_handler_slower_than_the_timeout_raises_and_ends_the_environment(runtime, start):
    with start("sleeping_handler") as process:
        started = time.monotonic()
        with pytest.raises(InvocationTimeout, match=r"within 0\.5 s.*function\.log"):
            runtime.invoke({"seconds": 30}, timeout=0.5)
        assert time.monotonic() - started < 10
        assert process.poll() is not None  # stopped, as Lambda resets a timed-out environment
        with pytest.raises(FunctionExited, match="exited with code"):
            runtime.invoke({"seconds": 0}, timeout=5)


def test_a_function_process_that_dies_fails_the_invocation_at_once(runtime, start):
    with start("dying_handler"), pytest.raises(FunctionExited, match="exited with code 3"):
        runtime.invoke({}, timeout=30)


def test_a_response_over_the_payload_limit_is_refused(start, task_root, tmp_path):
    with (
        LambdaRuntime(max_response_bytes=1000) as small,
        run_function(small, "functions.big_handler", cwd=task_root, log=tmp_path / "big.log"),
    ):
        fits = small.invoke({"size": 100}, timeout=5)
        too_big = small.invoke({"size": 2000}, timeout=5)
        # awslambdaric treats the 413 as fatal and exits, so the environment is gone.
        with pytest.raises(FunctionExited):
            small.invoke({"size": 1}, timeout=5)

    assert fits.response == "x" * 100
    assert too_big.error["errorType"] == "Function.ResponseSizeTooLarge"


def test_a_bytes_result_is_returned_raw(runtime, start):
    with start("bytes_handler"):
        result = runtime.invoke({}, timeout=5)

    assert result.content_type == "application/unknown"
    assert result.response == b"\x00raw"


def test_the_function_gets_lambdas_environment_and_the_callers(
    runtime, start, task_root, monkeypatch
):
    # Set in the test process, this would switch awslambdaric to multi-concurrency mode.
    monkeypatch.setenv("AWS_LAMBDA_MAX_CONCURRENCY", "4")
    names = [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_MAX_CONCURRENCY",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
        "MODEL_URI",
    ]
    with start("env_handler", env={"MODEL_URI": "models:/ride-duration@production"}):
        env = runtime.invoke({"names": names}, timeout=5).response

    assert env == {
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "AWS_LAMBDA_MAX_CONCURRENCY": None,
        "_HANDLER": "functions.env_handler",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "test-fn",
        "MODEL_URI": "models:/ride-duration@production",
    }


def test_closing_the_runtime_ends_a_polling_function(task_root, tmp_path):
    with (
        LambdaRuntime() as runtime,
        run_function(
            runtime, "functions.lambda_handler", cwd=task_root, log=tmp_path / "f.log"
        ) as process,
    ):
        runtime.close()
        # `next` answered 500: awslambdaric gives up, as after a reset of the environment.
        assert process.wait(timeout=5) != 0


def test_answers_for_unknown_invocations_are_refused(runtime):
    import http.client

    connection = http.client.HTTPConnection(runtime.address, timeout=5)
    connection.request(
        "POST", "/2018-06-01/runtime/invocation/nope/response", body=json.dumps({"a": 1})
    )
    refused = connection.getresponse()
    assert refused.status == 400
    assert json.loads(refused.read())["errorType"] == "InvalidRequestID"
    connection.request("GET", "/2018-06-01/runtime/unknown")
    missing = connection.getresponse()
    assert missing.status == 404
    missing.read()
    connection.close()


def test_invoke_needs_a_taker_within_the_init_timeout(tmp_path):
    with (
        LambdaRuntime(init_timeout=0.3) as runtime,
        pytest.raises(InvocationTimeout, match="did not take invocation"),
    ):
        runtime.invoke({}, timeout=5)

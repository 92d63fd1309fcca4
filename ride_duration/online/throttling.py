"""The stream consumer's Kinesis calls, tried again while Kinesis throttles them or is out of reach.

Kinesis throttles each API by shard, stream or account (GetShardIterator and GetRecords: 5 calls
a second per shard, shared with every reader of the stream), answering
LimitExceededException or ProvisionedThroughputExceededException. A consumer keeps going: a
throttled call, and one that found no connection or a server error, is tried again after a
pause drawn at random up to a ceiling that doubles from 0.1 s to 5 s ("full jitter", so that
readers throttled together do not come back together), for as long as the consumer runs. Each
throttled answer is counted (by API and error code); each episode, a call throttled until it
answers, is one line in the log, not one per try. botocore's own retries are off for the
consumer's client (`kinesis.kinesis_client(retries=False)`): they would hide throttles from
the count and stack a second backoff under this one. Other errors are raised as they come.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# What Kinesis answers when a call came too fast for the shard, the stream or the account.
THROTTLED = frozenset(
    {"LimitExceededException", "ProvisionedThroughputExceededException", "KMSThrottlingException"}
)


class StoppedError(Exception):
    """The consumer was stopped while a call of it waited to be tried again."""


@dataclass(frozen=True)
class Backoff:
    """Full jitter: the pause before try `attempt` + 1 (0 for the first retry) is drawn
    uniformly between 0 and `base` * 2 ** attempt, at most `cap` seconds."""

    base: float = 0.1
    cap: float = 5.0
    draw: Callable[[], float] = random.random  # uniform in [0, 1)

    def delay(self, attempt: int) -> float:
        return self.draw() * min(self.cap, self.base * (1 << min(attempt, 32)))


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a failed call (botocore's ClientError), None for other failures."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def transient(error: BaseException) -> bool:
    """Whether a call failed for want of a connection or a working server: worth waiting for."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500
    try:
        from botocore.exceptions import ConnectionError as BotocoreConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:
        return False
    return isinstance(error, (BotocoreConnectionError, HTTPClientError))


def retryable(error: BaseException) -> bool:
    """Whether a failed call is worth trying again: throttled, or out of reach (`transient`)."""
    return error_code(error) in THROTTLED or transient(error)


def why(error: BaseException) -> str:
    """A failed call's cause in a few words: its error code, else its kind."""
    return error_code(error) or type(error).__name__


def episode_line(api: str, of: str, error: BaseException) -> str:
    """The one line of an episode of retries."""
    kind = "throttled" if error_code(error) in THROTTLED else "failed"
    return f"Kinesis {kind} {api} of {of} ({why(error)}): trying it again until it answers"


def _ignore(api: str, code: str) -> None:
    """Counts nothing: the default `on_throttle`."""


@dataclass(frozen=True)
class RetryingKinesis:
    """A boto3 Kinesis `client` whose consumer's calls outlast throttling and lost connections.

    ListShards, DescribeStream and GetShardIterator are tried again until they answer, or until
    `stop` is set (StoppedError). PutRecords, the handler's write of a batch, is tried again
    until it answers even when stopping (the batch at hand is finished), and so are its entries
    Kinesis throttled one by one; entries refused for another reason are left to the sink.
    GetRecords is tried once: the consumer waits for a throttled shard without holding up the
    others. `on_throttle(api, code)` counts each throttled answer; `wait(seconds)` pauses
    (by default on `stop`, so that a stop ends the pause).
    """

    client: Any
    stop: threading.Event = field(default_factory=threading.Event)
    on_throttle: Callable[[str, str], None] = _ignore
    backoff: Backoff = field(default_factory=Backoff)
    wait: Callable[[float], object] | None = None

    def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        of = kwargs["StreamName"]
        return self.call("DescribeStream", of, self.client.describe_stream, kwargs)

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        of = kwargs.get("StreamName", "the stream")
        return self.call("ListShards", of, self.client.list_shards, kwargs)

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        of = kwargs["ShardId"]
        return self.call("GetShardIterator", of, self.client.get_shard_iterator, kwargs)

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        """One GetRecords, a throttled answer counted and raised."""
        try:
            answer: dict[str, Any] = self.client.get_records(**kwargs)
        except Exception as error:
            self._count("GetRecords", error)
            raise
        return answer

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        """PutRecords, with the entries Kinesis throttled sent again until it takes them."""
        stream = kwargs["StreamName"]
        records = list(kwargs["Records"])
        answer = self.call("PutRecords", stream, self.client.put_records, kwargs, stoppable=False)
        results = list(answer["Records"])
        attempt = 0
        while throttled := [i for i, r in enumerate(results) if r.get("ErrorCode") in THROTTLED]:
            for code in sorted({results[i]["ErrorCode"] for i in throttled}):
                self.on_throttle("PutRecords", code)
            if attempt == 0:
                logger.warning(
                    "Kinesis throttled %d records of PutRecords to %s (%s): sending them again "
                    "until it takes them",
                    len(throttled),
                    stream,
                    results[throttled[0]]["ErrorCode"],
                )
            self._pause(self.backoff.delay(attempt), stoppable=False)
            attempt += 1
            again = self.call(
                "PutRecords",
                stream,
                self.client.put_records,
                {**kwargs, "Records": [records[i] for i in throttled]},
                stoppable=False,
            )
            for i, result in zip(throttled, again["Records"], strict=True):
                results[i] = result
        failed = sum(1 for r in results if r.get("ErrorCode"))
        return {**answer, "FailedRecordCount": failed, "Records": results}

    def call(
        self,
        api: str,
        of: str,
        function: Callable[..., dict[str, Any]],
        kwargs: dict[str, Any],
        *,
        stoppable: bool = True,
    ) -> dict[str, Any]:
        """`function(**kwargs)`, tried again while throttled or out of reach (one line per
        episode); StoppedError when `stop` is set meanwhile and the call is `stoppable`."""
        attempt = 0
        while True:
            try:
                return function(**kwargs)
            except Exception as error:
                self._count(api, error)
                if not retryable(error):
                    raise
                if attempt == 0:
                    logger.warning("%s", episode_line(api, of, error))
            self._pause(self.backoff.delay(attempt), stoppable=stoppable)
            attempt += 1

    def _count(self, api: str, error: BaseException) -> None:
        """Count `error` when it is a throttled answer."""
        code = error_code(error)
        if code in THROTTLED:
            self.on_throttle(api, str(code))

    def _pause(self, seconds: float, *, stoppable: bool) -> None:
        if self.wait is not None:
            self.wait(seconds)
        elif stoppable:
            self.stop.wait(seconds)
        else:
            time.sleep(seconds)  # a pause that a stop does not end
        if stoppable and self.stop.is_set():
            raise StoppedError("stopped while waiting for Kinesis")

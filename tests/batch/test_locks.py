"""The per-month lock (`ride_duration.batch.locks`): who holds it, takeovers, races, heartbeats."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ride_duration.batch.locks import MonthLock, boot_id, pid_namespace
from ride_duration.batch.paths import LockFiles, MonthOutput
from ride_duration.core.errors import MonthBusyError
from ride_duration.core.months import Month
from tests.support.locks import holder
from tests.support.troubleshooting import assert_documented

STALE = 600


def files(tmp_path: Path) -> LockFiles:
    """The lock of green 2021-03 under `tmp_path`/out."""
    return MonthOutput(str(tmp_path / "out"), "green", Month(2021, 3)).lock


def lock_files(tmp_path: Path) -> list[str]:
    folder = Path(files(tmp_path).folder)
    return sorted(p.name for p in folder.glob("_lock*")) if folder.exists() else []


def place(tmp_path: Path, content: object, generation: int = 0, age: float = 0) -> Path:
    """A lock file of some earlier run, written `age` seconds ago."""
    path = Path(files(tmp_path).file(generation))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    if age:
        moment = time.time() - age
        os.utime(path, (moment, moment))
    return path


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


linux = pytest.mark.skipif(boot_id() is None, reason="the system tells no boot id (not Linux)")


@pytest.mark.parametrize(
    ("content", "age", "taken"),
    [
        pytest.param(lambda: holder(), 0, False, id="a live run on this host"),
        pytest.param(
            lambda: holder(host="elsewhere", pid=1), 0, False, id="a fresh lock of another host"
        ),
        pytest.param(
            lambda: holder(host="elsewhere", heartbeat=time.time() - STALE - 5),
            0,
            True,
            id="a lock of another host, not refreshed",
        ),
        pytest.param(
            lambda: holder(pid=dead_pid()), 0, True, id="a dead run on this host", marks=linux
        ),
        pytest.param(
            lambda: holder(pid_start="1"),
            0,
            True,
            id="a pid reused by another process",
            marks=linux,
        ),
        pytest.param(
            lambda: holder(boot_id="an-earlier-boot"),
            0,
            True,
            id="this host, before it restarted",
            marks=linux,
        ),
        pytest.param(lambda: "", 0, False, id="created, not yet written"),
        pytest.param(lambda: "", STALE + 5, True, id="created and never written"),
        pytest.param(lambda: "{not json", 0, False, id="a fresh file that is no lock"),
        pytest.param(lambda: "{not json", STALE + 5, True, id="an old file that is no lock"),
        pytest.param(lambda: "[1, 2]", STALE + 5, True, id="a JSON list"),
        pytest.param(lambda: holder(heartbeat="soon"), 0, False, id="a time that is no number"),
        pytest.param(lambda: holder(pid="x"), 0, False, id="a pid that is no number"),
        pytest.param(lambda: {"owner": "old"}, 0, True, id="a lock without a heartbeat"),
    ],
)
def test_a_lock_is_taken_over_exactly_when_its_run_is_gone(tmp_path, content, age, taken):
    place(tmp_path, content(), age=age)
    lock = MonthLock(files(tmp_path), owner="me", stale_after_seconds=STALE)
    # what the month's status sees of the lock agrees with what a run that wants it finds
    assert (lock.live_holder() is None) == taken
    if taken:
        with lock.held("green 2021-03"):
            assert lock.generation == 1
            assert lock_files(tmp_path) == ["_lock.000001.json"]  # the older one is gone
    else:
        with pytest.raises(MonthBusyError) as busy, lock.held("green 2021-03"):
            pass
        message = str(busy.value)
        assert message.startswith("green 2021-03 is ")
        assert "month=03/_lock.*.json" in message
        assert len(message.splitlines()) == 1
        assert_documented(f"error: {message}")
        assert lock_files(tmp_path) == ["_lock.000000.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            lambda: holder(owner="flow-run-7", host="worker-3", pid=1),
            "green 2021-03 is being scored by flow-run-7 on worker-3 since "
            "2021-04-01T00:00:00+00:00: wait for it, or delete {where} if that run is dead",
        ),
        (
            lambda: "{not json",
            "green 2021-03 is locked by {where}, which does not read as a lock (written 0 s "
            "ago): it is taken over after LOCK_STALE_SECONDS; delete it if no run is scoring "
            "this month",
        ),
    ],
    ids=["a live run", "a file that is no lock"],
)
def test_a_busy_month_says_who_scores_it_and_which_files_to_delete(tmp_path, content, message):
    place(tmp_path, content())
    lock = MonthLock(files(tmp_path), owner="me", stale_after_seconds=STALE)
    with pytest.raises(MonthBusyError) as busy, lock.held("green 2021-03"):
        pass
    assert str(busy.value) == message.format(where=files(tmp_path).prefix + ".*.json")
    assert_documented(f"error: {busy.value}")


@pytest.mark.parametrize(
    ("taxi_type", "month", "root", "busy"),
    [
        ("green", Month(2021, 3), "out", True),
        ("yellow", Month(2021, 3), "out", False),
        ("green", Month(2021, 4), "out", False),
        ("green", Month(2021, 3), "out/_experiments", False),
    ],
)
def test_one_run_at_a_time_scores_a_month_whatever_its_model(
    tmp_path, taxi_type, month, root, busy
):
    first = MonthLock(files(tmp_path), owner="first", stale_after_seconds=STALE)
    output = MonthOutput(str(tmp_path / root), taxi_type, month)
    second = MonthLock(output.lock, owner="second", stale_after_seconds=STALE)
    with first.held("green 2021-03"):
        assert first.live_holder()["owner"] == "first"
        if busy:
            assert second.live_holder()["owner"] == "first"
            assert second.acquire()["owner"] == "first"
            with (
                pytest.raises(MonthBusyError, match="is being scored by first on "),
                second.held(f"{taxi_type} {month}"),
            ):
                pass
            assert second.generation is None
        else:
            assert second.live_holder() is None
            with second.held(f"{taxi_type} {month}"):
                assert second.live_holder()["owner"] == "second"
    assert first.live_holder() is None


def test_a_lock_is_given_back_when_its_run_ends_and_taken_again_by_the_next(tmp_path):
    lock = MonthLock(files(tmp_path), owner="me", stale_after_seconds=STALE)
    assert lock.live_holder() is None
    with lock.held("green 2021-03"):
        assert lock_files(tmp_path) == ["_lock.000000.json"]
        assert lock.live_holder()["token"] == lock.content["token"]
    assert lock_files(tmp_path) == []
    assert lock.live_holder() is None
    again = MonthLock(files(tmp_path), owner="next", stale_after_seconds=STALE)
    with again.held("green 2021-03"):
        assert again.generation == 0


def test_a_takeover_is_void_when_the_lock_changed_meanwhile(tmp_path):
    """A racer that judged the old lock stale, then paused: a fresh run holds the month now."""
    gone = holder(host="elsewhere", heartbeat=time.time() - STALE - 5)
    place(tmp_path, gone)
    slow = MonthLock(files(tmp_path), owner="slow", stale_after_seconds=STALE)
    judged = Path(files(tmp_path).file(0)).read_text()
    Path(files(tmp_path).file(0)).unlink()  # the lock's run finished meanwhile...
    fresh = MonthLock(files(tmp_path), owner="fresh", stale_after_seconds=STALE)
    assert fresh.acquire() is None  # ...and a fresh run took generation 0
    # The slow racer now creates generation 1 from what it judged: it must not hold the lock.
    assert judged != Path(files(tmp_path).file(0)).read_text()
    original = slow._generations
    slow._generations = lambda: [0] if not Path(files(tmp_path).file(1)).exists() else original()
    assert slow.acquire()["owner"] == "fresh"
    assert lock_files(tmp_path) == ["_lock.000000.json"]
    fresh.check()


def _race(folder: str, ready, done, results) -> None:
    lock = MonthLock(
        LockFiles(folder, "_lock"), owner=f"racer-{os.getpid()}", stale_after_seconds=STALE
    )
    ready.wait()
    results.put(lock.acquire() is None)
    done.wait()  # the winner lives on while the others try: a dead winner may be taken over


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.parametrize(
    ("before", "age", "rounds"),
    [
        (lambda: holder(host="elsewhere", heartbeat=time.time() - STALE - 5), 0, 50),
        (lambda: "{not json", STALE + 5, 10),
        (lambda: None, 0, 10),
    ],
    ids=["a stale lock", "an old file that is no lock", "no lock"],
)
def test_of_eight_processes_racing_for_a_lock_exactly_one_wins(tmp_path, before, age, rounds):
    context = multiprocessing.get_context("fork")
    for round_ in range(rounds):
        target = files(tmp_path / f"round-{round_}")
        if before() is not None:
            place(tmp_path / f"round-{round_}", before(), generation=round_ % 3, age=age)
        ready, done, results = context.Barrier(8), context.Barrier(8), context.Queue()
        racers = [
            context.Process(target=_race, args=(target.folder, ready, done, results))
            for _ in range(8)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        wins = [results.get(timeout=10) for _ in racers]
        assert wins.count(True) == 1, f"round {round_}: {wins.count(True)} winners"


def test_a_live_run_refreshes_its_lock_so_a_long_month_keeps_it(tmp_path):
    lock = MonthLock(files(tmp_path), owner="long", stale_after_seconds=4)  # refreshed each 1 s
    with lock.held("green 2021-03"):
        time.sleep(6)  # longer than the lock would stay fresh unrefreshed
        other = MonthLock(files(tmp_path), owner="other", stale_after_seconds=4)
        assert other.acquire()["owner"] == "long"
        lock.check()  # still ours


def test_a_run_whose_lock_was_taken_over_publishes_nothing(tmp_path):
    lock = MonthLock(files(tmp_path), owner="paused", stale_after_seconds=STALE)
    with lock.held("green 2021-03"):
        # A run on another host decided this one was gone (say, it was paused for long).
        place(tmp_path, holder(owner="usurper", host="elsewhere"), generation=1)
        with pytest.raises(MonthBusyError) as lost:
            lock.check()
    assert str(lost.value).startswith(
        f"the lock of {files(tmp_path).folder} was taken over by usurper while this run scored"
    )
    content = json.loads(Path(files(tmp_path).file(1)).read_text())
    assert content["owner"] == "usurper"  # the run does not touch the lock that is not its own


def test_a_month_under_a_root_whose_name_has_glob_characters_can_be_locked(tmp_path):
    lock_of = MonthOutput(str(tmp_path / "run[1]"), "green", Month(2021, 3)).lock
    lock = MonthLock(lock_of, owner="me", stale_after_seconds=STALE)
    with lock.held("green 2021-03"):
        assert lock.live_holder()["owner"] == "me"
    again = MonthLock(lock_of, owner="next", stale_after_seconds=STALE)
    with again.held("green 2021-03"):
        assert again.generation == 0


# --- any content, a killed creation, other pid namespaces, earlier versions --------------------


def raw(tmp_path: Path, name: str, content: object, age: float) -> None:
    """A file `name` in the lock's folder holding `content` (bytes, text, or a lock as JSON),
    last written `age` seconds ago."""
    path = Path(files(tmp_path).folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)  # Python's JSON: NaN and Infinity as JavaScript's
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    moment = time.time() - age
    os.utime(path, (moment, moment))


ELSEWHERE = {"host": "elsewhere", "boot_id": "another-boot", "pid_ns": "pid:[1]"}
OLD = STALE + 5
FUTURE = time.time() + 10**9
GEN = "_lock.000000.json"


@pytest.mark.parametrize(
    ("name", "content", "age", "taken"),
    [
        pytest.param(GEN, b"\xff\xfe\x00 not text", 0, False, id="bytes that are not UTF-8"),
        pytest.param(GEN, b"\xff\xfe\x00 not text", OLD, True, id="old bytes, not UTF-8"),
        pytest.param(
            GEN,
            lambda: json.dumps(holder(**ELSEWHERE)).replace("flow-run-1", "\\udc80"),
            0,
            False,
            id="an owner that is a lone surrogate",
        ),
        pytest.param(
            GEN,
            lambda: json.dumps(holder(owner="x")).encode().replace(b'"x"', b'"\xff\xfe"'),
            0,
            False,
            id="an owner whose bytes are not UTF-8",
        ),
        pytest.param(GEN, lambda: holder(pid=math.inf), 0, False, id="pid Infinity"),
        pytest.param(GEN, lambda: holder(pid=-math.inf), 0, False, id="pid -Infinity"),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, heartbeat=math.nan),
            OLD,
            True,
            id="another host's NaN heartbeat, file not written since",
        ),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, heartbeat="nan"),
            OLD,
            True,
            id="another host's heartbeat 'nan' as text, file not written since",
        ),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, heartbeat=FUTURE),
            OLD,
            True,
            id="another host's far-future heartbeat, file not written since",
        ),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, heartbeat=math.inf),
            OLD,
            True,
            id="another host's heartbeat Infinity, file not written since",
        ),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, heartbeat="1e999"),
            OLD,
            True,
            id="another host's heartbeat '1e999' as text, file not written since",
        ),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, owner="x" * 3_000_000),
            0,
            False,
            id="megabytes of owner",
        ),
        pytest.param(
            GEN,
            lambda: holder(**ELSEWHERE, owner="run\nTraceback (most recent call last):\r\n"),
            0,
            False,
            id="an owner with newlines",
        ),
        pytest.param(
            GEN,
            lambda: holder(host="\x1b[2J\x1b[31mhost\u2028", since=["2021", {"\x00": 1}]),
            0,
            False,
            id="terminal escapes, a line separator and a list for a time",
        ),
        pytest.param(
            GEN,
            lambda: holder(pid=dead_pid(), pid_ns="pid:[1]"),
            0,
            False,
            id="a pid gone here, of a run in another pid namespace",
            marks=linux,
        ),
        pytest.param(
            "_lock-abc.json",
            lambda: {
                "owner": "old",
                "host": "h",
                "pid": 1,
                "since": "s",
                "since_epoch": time.time(),
            },
            0,
            False,
            id="an earlier version's single-file lock",
        ),
        pytest.param(
            "_lock-abc.json",
            lambda: {"owner": "old", "host": "h", "pid": 1, "since": "s", "since_epoch": 0},
            OLD,
            True,
            id="an earlier version's single-file lock, stale",
        ),
        pytest.param(
            "_lock-0123abcd.000002.json",
            lambda: holder(owner="old", pid_ns=None),
            0,
            False,
            id="an earlier version's lock by model and generation",
        ),
        pytest.param(
            "_lock-abc.json", b"\xff", 0, False, id="an earlier version's lock that does not read"
        ),
    ],
)
def test_any_lock_content_is_a_one_line_busy_error_or_a_takeover(
    tmp_path, name, content, age, taken
):
    raw(tmp_path, name, content() if callable(content) else content, age)
    before = lock_files(tmp_path)
    lock = MonthLock(files(tmp_path), owner="me", stale_after_seconds=STALE)
    assert (lock.live_holder() is None) == taken
    if taken:
        with lock.held("green 2021-03"):
            # an older generation is removed; an earlier version's lock is left to migrate
            mine = Path(files(tmp_path).file(lock.generation)).name
            assert lock_files(tmp_path) == sorted({mine} | set(before) - {GEN})
        return
    with pytest.raises(MonthBusyError) as busy, lock.held("green 2021-03"):
        pass
    message = str(busy.value)
    assert message.startswith("green 2021-03 is ")
    assert message.isprintable()  # one line, nothing a terminal acts on, encodable
    assert len(message) < 1000
    assert_documented(f"error: {message}")
    assert f"month=03/{name}" in message or "month=03/_lock.*.json" in message
    assert lock_files(tmp_path) == before


def _die_creating(folder: str, call: str) -> None:
    """Take the lock of `folder`, killed (SIGKILL) as `call` is first made on a lock file."""
    original = getattr(os, call)

    def dying(path: object, *args: object, **kwargs: object) -> object:
        if "_lock" not in os.fspath(path) or (call == "open" and not args[0] & os.O_CREAT):
            return original(path, *args, **kwargs)
        if call == "open":
            original(path, *args, **kwargs)  # the file exists now, empty
        os.kill(os.getpid(), signal.SIGKILL)
        return None

    setattr(os, call, dying)
    MonthLock(LockFiles(folder, "_lock"), owner="killed", stale_after_seconds=STALE).acquire()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.parametrize(
    "call",
    [
        pytest.param("open", id="killed as its file is created, before it is written"),
        pytest.param("link", id="killed once written, before its file is in place"),
    ],
)
def test_a_run_killed_while_it_creates_its_lock_leaves_no_lock_behind(tmp_path, call):
    folder = files(tmp_path).folder
    dying = multiprocessing.get_context("fork").Process(target=_die_creating, args=(folder, call))
    dying.start()
    dying.join(timeout=60)
    assert dying.exitcode == -signal.SIGKILL
    lock = MonthLock(files(tmp_path), owner="next", stale_after_seconds=STALE)
    assert lock.live_holder() is None
    with lock.held("green 2021-03"):  # at once, not LOCK_STALE_SECONDS later
        assert lock.generation == 0
        # what the killed run wrote is cleaned by the run that takes the lock
        assert sorted(p.name for p in Path(folder).iterdir()) == ["_lock.000000.json"]


def test_a_live_run_in_another_pid_namespace_keeps_its_lock(tmp_path):
    """Its pid names another process here (or none): a run here must go by its heartbeat."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command (util-linux) to start a run in another pid namespace")
    folder = files(tmp_path).folder
    script = (
        "import os, sys\n"
        "from ride_duration.batch.locks import MonthLock\n"
        "from ride_duration.batch.paths import LockFiles\n"
        f"lock = MonthLock(LockFiles({folder!r}, '_lock'), 'namespaced', {STALE})\n"
        "with lock.held('green 2021-03'):\n"
        "    print('held in', os.readlink('/proc/self/ns/pid'), flush=True)\n"
        "    sys.stdin.read()\n"
    )
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script]
    with subprocess.Popen(
        command,
        cwd=Path(__file__).parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as namespaced:
        try:
            said = namespaced.stdout.readline().split()
            if said[:2] != ["held", "in"]:
                namespaced.wait(timeout=30)
                pytest.skip(
                    f"cannot start a run in a new pid namespace: {namespaced.stderr.read()}"
                )
            assert said[2] != pid_namespace()  # it really is another namespace
            lock = MonthLock(files(tmp_path), owner="here", stale_after_seconds=STALE)
            assert (lock.live_holder() or {}).get("owner") == "namespaced"  # not judged gone
            with (
                pytest.raises(MonthBusyError, match="is being scored by namespaced on "),
                lock.held("green 2021-03"),
            ):
                pass
            assert lock_files(tmp_path) == ["_lock.000000.json"]
        finally:
            namespaced.stdin.close()
            namespaced.wait(timeout=30)
    assert namespaced.returncode == 0, namespaced.stderr.read()
    assert lock_files(tmp_path) == []  # it gave its lock back

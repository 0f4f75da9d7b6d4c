"""The pieces of ``broker serve --workers N`` (``broker.supervisor``, ``broker.worker_metrics``),
and the supervisor itself as a real process running stand-in workers that serve no HTTP, so that
its restarts, reloads and stops can be driven exactly. ``tests/e2e/test_workers.py`` runs it with
the real broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.supervisor import RestartPolicy, default_workers, describe_status
from broker.worker_metrics import SharedCounters, read_counts, sum_counts

REPO = Path(__file__).resolve().parents[1]
WAIT = 20.0  # a bound on "eventually", not a timing assertion


# --- pure pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (1000, 30.0)],
    ids=["none", "first", "second", "third", "sixth", "capped", "many"],
)
def test_restart_delay_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    assert RestartPolicy().delay(failures) == delay


@pytest.mark.parametrize(
    ("previous", "lived", "ready", "after"),
    [
        (0, 0.2, False, 1),  # died before it accepted anything
        (3, 0.2, False, 4),
        (2, 5.0, True, 3),  # ready, but died soon after: still failing at start
        (5, 10.0, True, 0),  # served long enough: a crash of a working worker, restart at once
        (5, 3600.0, False, 6),  # never ready, however long it took
    ],
    ids=["not-ready", "again", "soon-after-ready", "stable", "slow-and-never-ready"],
)
def test_quick_failures_count_until_a_worker_was_stable(
    previous: int, lived: float, ready: bool, after: int
) -> None:
    assert RestartPolicy().failures_after(previous, lived=lived, was_ready=ready) == after


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"BROKER_WORKERS": "3"}, 3),
        ({"BROKER_WORKERS": " 1 "}, 1),
        ({"BROKER_WORKERS": ""}, None),
        ({}, None),
    ],
    ids=["env", "env-spaces", "env-empty", "no-env"],
)
def test_the_default_is_the_env_else_the_usable_cores(
    environ: dict[str, str], expected: int | None
) -> None:
    assert default_workers(environ) == (expected or len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_worker_count_in_the_env_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="BROKER_WORKERS"):
        default_workers({"BROKER_WORKERS": value})


def test_describe_status() -> None:
    assert describe_status(0) == "exit 0"
    assert describe_status(3 << 8) == "exit 3"
    assert describe_status(signal.SIGKILL) == "killed by SIGKILL"


def test_metrics_of_every_worker_add_up(tmp_path: Path) -> None:
    me, other, gone = (SharedCounters(tmp_path, pid) for pid in (10, 11, 12))
    me.write({'x{status="200"}': 1})  # the file is for the others; my live counts are used
    other.write({'x{status="200"}': 5, 'x{status="401"}': 2})
    gone.write({'x{status="401"}': 1})  # a worker that has exited still counts
    (tmp_path / "metrics-13.json").write_text("{not json")  # being written by hand? ignored
    (tmp_path / "metrics-14.json").write_text(json.dumps({"y": "7", "z": -1, "w": 3}))
    assert me.others() == {'x{status="200"}': 5, 'x{status="401"}': 3, "w": 3}
    assert me.total({'x{status="200"}': 4}) == {
        'x{status="200"}': 9,
        'x{status="401"}': 3,
        "w": 3,
    }
    assert read_counts(tmp_path / "metrics-99.json") == {}
    assert sum_counts([{"a": 1}, {"a": 2, "b": 1}]) == {"a": 3, "b": 1}
    assert not list(tmp_path.glob(".*tmp"))  # written by rename: no half-written file stays


# --- the supervisor as a process, with stand-in workers ----------------------------------------

STAND_IN = textwrap.dedent(
    """
    import logging, signal, sys
    from pathlib import Path
    from broker.supervisor import RestartPolicy, Supervisor

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    config = Path(sys.argv[1])
    base, cap, stable = (float(a) for a in sys.argv[2:5])

    def reload():
        text = config.read_text().strip()
        if text == "bad":
            raise ValueError("the config says bad")
        return text

    def run_worker(settings, sock, ready, run_dir):
        if settings == "fail":
            return 3
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        ready()
        while True:
            signal.pause()

    import socket
    sock = socket.create_server(("127.0.0.1", 0))
    raise SystemExit(
        Supervisor(
            sock=sock,
            workers=int(sys.argv[5]),
            settings=reload(),
            reload=reload,
            run_worker=run_worker,
            on_ready=lambda: print("ready", flush=True),
            policy=RestartPolicy(base=base, cap=cap, stable_after=stable),
        ).run()
    )
    """
)


class StandIn:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, config: Path) -> None:
        self.proc, self.log, self.config = proc, log, config

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def wait_for(self, check: Callable[[list[str]], bool], what: str) -> list[str]:
        deadline = time.monotonic() + WAIT
        while not check(lines := self.lines()):
            assert self.proc.poll() is None, f"exited: {lines}"
            assert time.monotonic() < deadline, f"not within {WAIT} s: {what}: {lines}"
            time.sleep(0.05)
        return lines

    def count(self, pattern: str) -> Callable[[list[str]], int]:
        return lambda lines: sum(1 for line in lines if re.search(pattern, line))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[Callable[..., StandIn]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        config: str, *, workers: int = 2, base: float = 0.1, cap: float = 0.4, stable: float = 10
    ) -> StandIn:
        script, path, log = tmp_path / "sup.py", tmp_path / "config", tmp_path / "log"
        script.write_text(STAND_IN)
        path.write_text(config)
        args = [str(path), str(base), str(cap), str(stable), str(workers)]
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=REPO,
            )
        started.append(proc)
        return StandIn(proc, log, path)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def pids(lines: list[str], pattern: str) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(pattern, line))]


def test_a_worker_that_cannot_start_is_restarted_later_and_later(
    stand_in: Callable[..., StandIn],
) -> None:
    s = stand_in("fail", workers=1)
    lines = s.wait_for(lambda lines: s.count("starting another in")(lines) >= 5, "5 failures")
    delays = [float(m.group(1)) for x in lines if (m := re.search(r"another in ([\d.]+) s", x))]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]  # base 0.1, doubled, capped at 0.4
    assert all("died (exit 3)" in x for x in lines if "starting another" in x)
    assert s.stop() == 0  # stopped while waiting to restart: nothing to wait for


def test_a_killed_worker_is_replaced_and_the_others_keep_running(
    stand_in: Callable[..., StandIn],
) -> None:
    s = stand_in("ok", workers=2, stable=0)  # every worker counts as stable: restart at once
    lines = s.wait_for(lambda lines: s.count("accepting connections")(lines) == 2, "2 ready")
    first, second = pids(lines, r"started worker \d \(pid (\d+)\)")
    os.kill(first, signal.SIGKILL)
    lines = s.wait_for(lambda lines: s.count("accepting connections")(lines) == 3, "replaced")
    assert any(f"(pid {first}) died (killed by SIGKILL)" in x for x in lines)
    assert any("starting another in 0.0 s" in x for x in lines)
    third = pids(lines, r"started worker \d \(pid (\d+)\)")[-1]
    assert third not in (first, second)
    os.kill(second, 0)  # still there
    assert s.stop() == 0
    assert s.count(r"stopped: exit 0")(s.lines()) == 2


def test_sighup_replaces_workers_one_at_a_time_and_a_bad_config_keeps_them(
    stand_in: Callable[..., StandIn],
) -> None:
    s = stand_in("ok", workers=2)
    lines = s.wait_for(lambda lines: s.count("accepting connections")(lines) == 2, "2 ready")
    old = pids(lines, r"started worker \d \(pid (\d+)\)")

    s.config.write_text("bad")
    s.proc.send_signal(signal.SIGHUP)
    lines = s.wait_for(lambda lines: s.count("was not reloaded")(lines) == 1, "refused")
    assert any("the config says bad" in x for x in lines)

    s.config.write_text("ok, changed")
    s.proc.send_signal(signal.SIGHUP)
    lines = s.wait_for(lambda lines: s.count(r"replaced worker .* stopped")(lines) == 2, "rolled")
    assert pids(lines, r"started worker \d \(pid (\d+)\)")[:2] == old  # no start for "bad"
    events = [x for x in lines if re.search("started worker|accepting|replaces|replaced", x)]
    new = pids(lines, r"started worker \d \(pid (\d+)\)")[2:]
    assert len(new) == 2
    # each new worker is ready before the old one it replaces is told to stop, and the second
    # starts only once the first has taken over: always at least one worker accepts
    order = [
        f"started worker 0 (pid {new[0]})",
        f"worker 0 (pid {new[0]}) is accepting connections",
        f"worker 0: pid {new[0]} replaces pid {old[0]}",
        f"started worker 1 (pid {new[1]})",
        f"worker 1 (pid {new[1]}) is accepting connections",
        f"worker 1: pid {new[1]} replaces pid {old[1]}",
    ]
    assert [x for x in events if x in order] == order
    assert s.stop() == 0


def run_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    shutil.copytree(REPO / "config", tmp_path / "config")
    config = tmp_path / "config" / "broker.toml"
    r = subprocess.run(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    return r.returncode, r.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "0"], {}, "'0' is not a number of workers"),
        (["--workers", "many"], {}, "'many' is not a number of workers"),
        ([], {"BROKER_WORKERS": "many"}, "BROKER_WORKERS='many' is not a number of workers"),
    ],
    ids=["zero", "flag-word", "env-word"],
)
def test_a_bad_worker_count_fails_before_anything_starts(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    code, err = run_serve(tmp_path, *args, env=env)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "var").exists()  # no store was made

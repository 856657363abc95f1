"""A process that stops what its owner started once the owner is gone, however it went.

`tracker demo` starts servers that a SIGKILL of the demo would leave running: the embedded
PostgreSQL is daemonised by pg_ctl into a session of its own, so neither a signal to the demo's
process group nor a parent-death signal (PR_SET_PDEATHSIG) reaches it, and the simulator is the
demo's child, so a SIGKILL of the demo alone leaves it publishing. Only code that still runs
after the demo died can stop them, so the watchdog is a process of its own:

- it runs in a session of its own, so the signal a terminal or a service manager sends to the
  demo's process group does not reach it;
- it reads a pipe whose writing end only its owner holds. The owner writes what to clean up, one
  line each: `process PID` (stop that process), `postgres DIR` (stop the PostgreSQL whose data
  directory is DIR, found by its `postmaster.pid`), `remove PATH` (delete that tree);
- the pipe's end of file is its cue: the kernel closes the owner's descriptors however it ends
  (a return, an exception, SIGKILL). It then asks every process to stop (SIGTERM; PostgreSQL:
  SIGINT, its fast shutdown), kills those still running after `STOP_GRACE_S`, removes the paths,
  and exits.

After a normal exit the owner has stopped and removed everything itself, so the watchdog finds
nothing to do; the owner waits for it to exit so that it leaves no process either. Processes are
held by pidfds (Linux 5.3), opened when they are named: a pid reused after the process ended
cannot be mistaken for it. The module uses the standard library only, so the watchdog starts in
a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

STOP_GRACE_S: Final = 5.0  # between the polite signal and SIGKILL
KILL_WAIT_S: Final = 5.0  # for the exit after SIGKILL
CLOSE_TIMEOUT_S: Final = 2 * (STOP_GRACE_S + KILL_WAIT_S)


class WatchdogGoneError(RuntimeError):
    """The watchdog process is no longer there to take an order (it was killed)."""


class Watchdog:
    """The owner's end: tells the watchdog process what to clean up if the owner ends."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        self._process = process
        self._pipe: IO[bytes] = process.stdin

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop_process(self, pid: int) -> None:
        """Stop process `pid` (SIGTERM, then SIGKILL) if it still runs when the owner ends."""
        self._send(f"process {pid}")

    def stop_postgres(self, data_dir: Path) -> None:
        """Stop the PostgreSQL that runs on `data_dir` (if any) when the owner ends. Named by its
        directory, not its pid, so that it can be given before the server starts."""
        self._send(f"postgres {data_dir.resolve()}")

    def remove(self, path: Path) -> None:
        """Delete the tree at `path` when the owner ends, after the processes have stopped."""
        self._send(f"remove {path.resolve()}")

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """End the watchdog as the owner's death would, and wait for it (killed after
        `timeout_s`): it stops and removes whatever the owner left."""
        with contextlib.suppress(OSError):
            self._pipe.close()
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _send(self, line: str) -> None:
        if "\n" in line:
            raise ValueError(f"cannot pass {line!r} to the watchdog: it holds a newline")
        try:
            self._pipe.write(f"{line}\n".encode())
            self._pipe.flush()
        except (BrokenPipeError, ValueError) as e:  # ValueError: the pipe was closed
            raise WatchdogGoneError(
                f"the watchdog (pid {self._process.pid}) cannot take {line!r}: {e}"
            ) from e


@contextlib.contextmanager
def watchdog() -> Iterator[Watchdog]:
    """Start a watchdog process for this process; on exit, end it (see `Watchdog.close`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker.watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # out of reach of signals sent to our process group
    )
    dog = Watchdog(process)
    try:
        yield dog
    finally:
        dog.close()


# The watchdog process.


@dataclass(slots=True)
class _Target:
    """A process to stop: a pidfd on it, what it is (for the report), its polite signal."""

    pidfd: int
    what: str
    stop_signal: signal.Signals


@dataclass(slots=True)
class _Plan:
    processes: list[tuple[int, str]] = field(default_factory=list)  # (pidfd, what)
    postgres_dirs: list[Path] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    refused: int = 0  # lines that named nothing this module knows

    def take(self, line: str) -> None:
        """One order from the owner; a line it cannot read is reported and counted."""
        line = line.rstrip("\n")
        kind, _, argument = line.partition(" ")
        if kind == "process" and argument.isdigit():
            with contextlib.suppress(ProcessLookupError):  # else already gone
                self.processes.append((os.pidfd_open(int(argument)), f"process {argument}"))
        elif kind == "postgres" and argument.startswith("/"):
            self.postgres_dirs.append(Path(argument))
        elif kind == "remove" and argument.startswith("/"):
            self.paths.append(Path(argument))
        else:
            self.refused += 1
            _say(f"ignoring {line!r}: expected 'process PID', 'postgres DIR' or 'remove PATH'")


def _postmaster(data_dir: Path) -> _Target | None:
    """The running postmaster of `data_dir`: the pid in its `postmaster.pid`, if that process's
    command line names the directory (the file outlives a crashed server; its pid may be
    another process's by now)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        pidfd = os.pidfd_open(pid)
    except (OSError, ValueError):
        return None  # not running (or never started)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        command = []
    if str(data_dir).encode() not in command:
        os.close(pidfd)
        return None
    return _Target(pidfd, f"PostgreSQL {pid} on {data_dir}", signal.SIGINT)


def _signal(target: _Target, signum: signal.Signals) -> bool:
    """Send `signum`; False if the process has ended already."""
    try:
        signal.pidfd_send_signal(target.pidfd, signum)
    except ProcessLookupError:
        return False
    return True


def _wait(targets: list[_Target], timeout_s: float) -> list[_Target]:
    """Wait up to `timeout_s` for the targets to end (a pidfd reads as ready when its process
    has ended); those still running."""
    waiting = {t.pidfd: t for t in targets}
    poller = select.poll()
    for pidfd in waiting:
        poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while waiting and (left_s := deadline - time.monotonic()) > 0:
        for pidfd, _ in poller.poll(left_s * 1000):
            poller.unregister(pidfd)
            del waiting[pidfd]
    return list(waiting.values())


def _carry_out(plan: _Plan) -> None:
    """Stop what still runs, then remove the paths; report what had been left."""
    targets = [_Target(pidfd, what, signal.SIGTERM) for pidfd, what in plan.processes]
    targets += [t for d in plan.postgres_dirs if (t := _postmaster(d)) is not None]
    running = [t for t in targets if _signal(t, t.stop_signal)]
    if running:
        _say(f"its owner ended, stopping {', '.join(t.what for t in running)}")
    stubborn = _wait(running, STOP_GRACE_S)
    for target in stubborn:
        _say(f"{target.what} still runs {STOP_GRACE_S:.0f} s after {target.stop_signal.name}: "
             "killing it")  # fmt: skip
        _signal(target, signal.SIGKILL)
    _wait(stubborn, KILL_WAIT_S)
    for target in targets:
        os.close(target.pidfd)
    for path in plan.paths:
        if path.exists():
            _say(f"removing {path}")
            shutil.rmtree(path, ignore_errors=True)
    if plan.refused:
        _say(f"{plan.refused} order(s) from the owner were ignored (see above)")


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr may be a terminal that is gone
        print(f"watchdog {os.getpid()}: {message}", file=sys.stderr, flush=True)


def main() -> None:
    # Only the end of the pipe ends the watchdog: not Ctrl-C, not a hang-up of the terminal, not
    # a SIGTERM sent to every process of a service (it must outlive its owner's clean-up).
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    plan = _Plan()
    for line in sys.stdin.buffer:
        plan.take(line.decode(errors="replace"))
    _carry_out(plan)


if __name__ == "__main__":
    main()

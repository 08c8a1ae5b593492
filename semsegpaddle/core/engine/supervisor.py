"""Run Paddle's launcher under watch: a failed process ends the job quickly, is named in one line,
and leaves no process behind.

Paddle's launcher (``python -m paddle.distributed.launch``) starts each process in its own session
and stops the others when one fails. Around it, this supervisor

- gives the processes a folder for their records (``$SEMSEG_RANK_DIR``, see :mod:`rank_watch`) and
  watches their pids;
- stops the launcher itself if it has not ended ``stop_grace`` seconds after a process died;
- once the launcher has ended, kills whatever is left of the job's processes (and their process
  groups: data-loading workers);
- prints ONE line naming the process that ended the job: a signal (from the launcher's report of
  the exit code), an error, a timeout (``runtime.collective_timeout``), or lost contact with a
  process on another machine;
- passes SIGTERM/SIGINT on to the launcher (the processes then stop after the current step with a
  checkpoint) and dies with it if killed itself (the launcher gets SIGTERM).

Imports no paddle: the supervisor is light, the launcher and the processes hold the framework.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from semsegpaddle.core.engine.rank_watch import RANK_DIR_ENV, end_record_path, process_start_ticks

#: the launcher's report of a failed process, e.g. "Container rank 1 status failed cmd [...] code -9 log ..."
FAILED_REPORT = re.compile(r"Container rank (\d+) status failed .* code (-?\d+)")
STOP_GRACE = 10.0
POLL = 0.2


@dataclass
class RankProcess:
    """A process of the job as its start record describes it."""

    rank: int
    pid: int
    start_ticks: int | None
    died_at: float | None = None  # wall time the supervisor first saw it gone

    def alive(self) -> bool:
        """True while this very process (pid and start time) exists and is not a zombie."""
        ticks = process_start_ticks(self.pid)
        if ticks is None or (self.start_ticks is not None and ticks != self.start_ticks):
            return False
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False


def clear_records(folder: Path) -> None:
    """Forget the records of an earlier session in ``folder`` (a resume reuses it)."""
    for path in folder.glob("rank-*.json"):
        path.unlink(missing_ok=True)


def read_processes(folder: Path, known: dict[int, RankProcess]) -> None:
    """Add the processes that wrote a start record since the last call to ``known``."""
    for path in folder.glob("rank-[0-9]*.json"):
        if path.name.endswith(".end.json"):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written
        rank = int(record["rank"])
        if rank not in known or known[rank].pid != record["pid"]:
            known[rank] = RankProcess(rank, int(record["pid"]), record.get("start_ticks"))


def read_end_records(folder: Path, ranks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The end records the processes ``ranks`` wrote."""
    records = {}
    for rank in ranks:
        with contextlib.suppress(OSError, ValueError):
            records[rank] = json.loads(end_record_path(folder, rank).read_text())
    return records


def _exit_words(code: int | None) -> str:
    if code is None:
        return "vanished (killed by a signal, e.g. SIGKILL or the out-of-memory killer)"
    if code == -signal.SIGABRT:
        return "was killed by SIGABRT (Paddle aborts a process whose collective lost a peer: see the other nodes)"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def culprit_line(processes: dict[int, RankProcess], records: dict[int, dict[str, Any]],
                 codes: dict[int, int], launcher_code: int, log_dir: Path) -> str:
    """One line naming the process that ended the job and how.

    The cause is the earliest of: a process that failed with an error or timed out (its record), or
    one that died without a record (a signal). A process that only lost contact with a peer is a
    consequence, named only when nothing else is known (its peer ran on another machine).
    """
    causes: list[tuple[float, str]] = []
    for rank, record in records.items():
        if record["reason"] in ("error", "timeout", "stopped"):
            causes.append((record["time"], record["message"]))
    for rank, process in processes.items():
        if rank in records or process.died_at is None:
            continue
        code = codes.get(rank)
        causes.append((process.died_at, f"rank {rank} (pid {process.pid}) {_exit_words(code)}"))
    if causes:
        return min(causes)[1]
    peers = [r for r in records.values() if r["reason"] == "peer"]
    if peers:
        return f"{peers[0]['message']}: another machine's process failed, see its output"
    if codes:
        rank = min(codes)
        return f"rank {rank} {_exit_words(codes[rank])}; see {log_dir / f'workerlog.{rank}'}"
    return f"the launcher exited with code {launcher_code}; see the worker logs in {log_dir}"


def _die_with_parent() -> None:
    """In the launcher's process, before exec: receive SIGTERM when the supervisor dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _kill_group_and_process(pid: int, sig: int) -> None:
    """``sig`` to the process group led by ``pid`` (the launcher starts each process as a session
    leader, so its data-loading workers are in it) and to ``pid`` itself."""
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


class Supervisor:
    """Run ``command`` (Paddle's launcher) and watch the job's processes through ``rank_dir``."""

    def __init__(self, command: Sequence[str], rank_dir: Path, *, stop_grace: float = STOP_GRACE,
                 out: Any = None) -> None:
        self.command, self.rank_dir, self.stop_grace = list(command), Path(rank_dir), stop_grace
        self.out = out or sys.stdout
        self.processes: dict[int, RankProcess] = {}
        self.codes: dict[int, int] = {}  # exit codes the launcher reported, by rank
        self.forwarded: int | None = None

    def run(self) -> int:
        """Run the job; the exit code of the command (0, or non-zero with one line on stderr)."""
        self.rank_dir.mkdir(parents=True, exist_ok=True)
        clear_records(self.rank_dir)
        launcher = subprocess.Popen(self.command, env={**os.environ, RANK_DIR_ENV: str(self.rank_dir)},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        reader = threading.Thread(target=self._relay, args=(launcher.stdout,), daemon=True)
        reader.start()
        previous = {sig: signal.signal(sig, lambda signum, _: self._forward(launcher, signum))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        started = time.monotonic()
        try:
            self._watch(launcher)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            reader.join(timeout=5)
            left = self._clean_up(launcher)
        code = launcher.returncode
        if code == 0 and not left:
            return 0
        if self.forwarded is not None:
            return code if code else 128 + self.forwarded
        line = culprit_line(self.processes, read_end_records(self.rank_dir, sorted(self.processes)), self.codes,
                            code, self.rank_dir)
        ended = time.monotonic() - started
        print(f"semseg train: {line}; every process of the job was stopped (after {ended:.0f} s in all"
              f"{f', {len(left)} killed by the supervisor' if left else ''}); continue with --resume",
              file=sys.stderr, flush=True)
        return 1

    def _relay(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            with contextlib.suppress(OSError, ValueError):
                self.out.write(line)
                self.out.flush()
            report = FAILED_REPORT.search(line)
            if report:
                self.codes.setdefault(int(report.group(1)), int(report.group(2)))

    def _forward(self, launcher: subprocess.Popen, signum: int) -> None:
        self.forwarded = signum
        with contextlib.suppress(OSError):
            launcher.send_signal(signum)

    def _watch(self, launcher: subprocess.Popen) -> None:
        first_death: float | None = None
        while launcher.poll() is None:
            read_processes(self.rank_dir, self.processes)
            for process in self.processes.values():
                if process.died_at is None and not process.alive():
                    process.died_at = time.time()
                    first_death = first_death or time.monotonic()
            if first_death is not None and time.monotonic() - first_death > self.stop_grace:
                self._stop_launcher(launcher)
                return
            time.sleep(POLL)

    def _stop_launcher(self, launcher: subprocess.Popen) -> None:
        """The launcher did not end after a process died: SIGTERM, then SIGKILL its group."""
        with contextlib.suppress(OSError):
            os.killpg(launcher.pid, signal.SIGTERM)
        try:
            launcher.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()

    def _clean_up(self, launcher: subprocess.Popen) -> list[int]:
        """Kill what is left of the job once the launcher ended; the ranks killed."""
        if launcher.poll() is None:
            self._stop_launcher(launcher)
        with contextlib.suppress(OSError):  # the group outlives its leader while members are left
            os.killpg(launcher.pid, signal.SIGKILL)
        read_processes(self.rank_dir, self.processes)
        left = []
        for process in self.processes.values():
            if process.alive():
                left.append(process.rank)
                _kill_group_and_process(process.pid, signal.SIGKILL)
        return left


def supervise(command: Sequence[str], rank_dir: str | Path, stop_grace: float = STOP_GRACE) -> int:
    """Run Paddle's launcher ``command`` under a :class:`Supervisor`; its exit code."""
    return Supervisor(command, Path(rank_dir), stop_grace=stop_grace).run()

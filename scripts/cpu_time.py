"""How much CPU a command's whole process tree uses: the floor its wall time has on a machine of N cores.

A study runs in three kinds of process (the command, the notebook kernel, the job workers), and the kernel and
workers are ended rather than waited for, so `time` and `/usr/bin/time` miss most of their CPU. This polls the
process tree (psutil, every `--every` seconds) and prints, once the command ends (or on Ctrl-C), each process's CPU
seconds (user + system, the last reading before it ended), the total, and the total over the cores this process may
use: no schedule can finish the same work sooner. A process is followed from the first reading that finds it, even
once its parent is gone; one that lives less than `--every` may be missed: meant for runs of minutes.

    python scripts/cpu_time.py [--every 0.3] [--cores N] -- python -m ecnb study --profile fashion --run-dir runs/fw
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import dataclass

import psutil


@dataclass
class Seen:
    """One process of the tree: its handle, its command line (read once) and its CPU seconds at the last reading."""

    process: psutil.Process
    line: str
    cpu: float = 0.0


def _read(seen: dict[tuple[int, float], Seen], root: psutil.Process) -> None:
    """Find the root's descendants not seen yet, then read the CPU time of every process still running."""
    try:
        found = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        found = []
    for p in found:
        try:
            key = (p.pid, p.create_time())
            if key not in seen:
                seen[key] = Seen(p, " ".join(p.cmdline())[:100])
        except psutil.Error:
            continue
    for entry in seen.values():
        try:
            if not entry.process.is_running():  # ended, or its pid taken by another process
                continue
            cpu = entry.process.cpu_times()
            entry.cpu = cpu.user + cpu.system
        except psutil.Error:
            continue  # ended: its last reading stands


def watch(command: list[str], every: float) -> tuple[int, float, list[Seen]]:
    """Run `command` and read its tree until it ends; its exit status (128 + N for a signal N, as a shell gives it),
    the wall seconds and the processes seen."""
    start = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    seen: dict[tuple[int, float], Seen] = {}
    try:
        while child.poll() is None:
            _read(seen, root)
            time.sleep(every)
    except KeyboardInterrupt:
        child.wait()  # the command had the Ctrl-C too
    status = child.wait()
    return (128 - status if status < 0 else status), time.monotonic() - start, list(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.3, help="seconds between readings (> 0)")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores to divide the CPU time by (default: those this process may run on)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.every <= 0 or args.cores < 1:
        parser.error("--every must be above 0 and --cores at least 1")
    status, wall, seen = watch(command, args.every)
    for entry in sorted(seen, key=lambda e: -e.cpu):
        if entry.cpu >= 0.1:
            print(f"{entry.process.pid:>8}  {entry.cpu:8.1f} s  {entry.line}")
    total = sum(e.cpu for e in seen)
    print(f"wall {wall:.1f} s, CPU {total:.1f} s in all: at least {total / args.cores:.1f} s on {args.cores} cores "
          f"({total / (args.cores * wall):.0%} of them busy)")
    raise SystemExit(status)


if __name__ == "__main__":
    main()

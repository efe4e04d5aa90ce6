"""How much CPU a command's whole process tree uses: the floor its wall time has on a machine of N cores.

A study runs in three kinds of process (the command, the notebook kernel, the job workers), and the kernel and
workers are ended rather than waited for, so `time` and `/usr/bin/time` miss most of their CPU. This polls every
process of the tree (psutil, every `--every` seconds) and prints, once the command ends, each one's CPU seconds
(user + system, the last reading before it ended), the total, and the total over the cores: no schedule can finish
the same work sooner. A process that lives less than `--every` may be missed: meant for runs of minutes.

    python scripts/cpu_time.py [--every 0.3] -- python -m ecnb study --profile fashion --run-dir runs/fw
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time

import psutil


def watch(command: list[str], every: float) -> tuple[int, float, dict[int, tuple[float, str]]]:
    """Run `command`; return its exit status, wall seconds and, per process of its tree, (CPU seconds, command line)."""
    start = time.monotonic()
    root = subprocess.Popen(command)
    seen: dict[int, tuple[float, str]] = {}
    while root.poll() is None:
        try:
            tree = [psutil.Process(root.pid), *psutil.Process(root.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                cpu = p.cpu_times()
                seen[p.pid] = (cpu.user + cpu.system, " ".join(p.cmdline())[:100])
            except psutil.Error:
                continue
        time.sleep(every)
    return root.wait(), time.monotonic() - start, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.3, help="seconds between readings")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    status, wall, seen = watch(command, args.every)
    for pid, (cpu, line) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
        if cpu >= 0.1:
            print(f"{pid:>8}  {cpu:8.1f} s  {line}")
    total, cores = sum(cpu for cpu, _ in seen.values()), os.cpu_count() or 1
    print(f"wall {wall:.1f} s, CPU {total:.1f} s in all: at least {total / cores:.1f} s on {cores} cores "
          f"({total / (cores * wall):.0%} of them busy)")
    raise SystemExit(status)


if __name__ == "__main__":
    main()

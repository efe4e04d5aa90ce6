"""A Ray cluster started the way people start one (issue 36): `ray start --head`, and a second node with
`ray start --address`, each a process of its own on this machine, and a small sweep given the head's address.

The head offers no CPU, so the sweep's one cell (a tiny study, notebooks 01 and 02, the example method file's method
as its one baseline) can only run on the second node: its `cell.json` names that node, its rows reach the sweep's merged
tables, and stopping the two `ray start` processes leaves no process of the cluster behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import EXAMPLE_METHOD, EXAMPLE_NAME, NB01, NB02, TINY_DATA_OPTIONS

from ecnb import sweep
from ecnb.study import NOTEBOOKS_DIR

pytestmark = pytest.mark.usefixtures("registry_restored")
ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")
TINY = dict(epochs=1, **TINY_DATA_OPTIONS)
STARTUP = 120  # seconds for a node to join on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(*args: str, env: dict, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in a session of its own: the node's processes are its children, and it stops them
    when it gets SIGTERM (as Ctrl-C in the terminal that started it would)."""
    with open(log, "w") as out:
        return subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + STARTUP
    while not condition():
        assert all(p.poll() is None for p in procs), f"a `ray start` ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def started(log: Path) -> bool:
    """Whether the `ray start` writing `log` has its node up: a node that joins while the head is still starting
    makes the head's own start time out (two raylets on one address)."""
    return "Ray runtime started" in log.read_text()


def of_cluster(temp: Path) -> list[psutil.Process]:
    """The processes of the cluster: every Ray process names its session folder, under `temp`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(temp) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (no CPU) and a node (one CPU) started by `ray start`: the head's address and the node's id. The
    project is on the nodes' PYTHONPATH, as `make setup` installs it on every machine of a real cluster."""
    import ray

    logs = tmp_path_factory.mktemp("ray-logs")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    address = f"127.0.0.1:{port}"
    procs = [ray_start("--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
                       env=env, log=logs / "head.log")]
    try:
        wait_for(lambda: started(logs / "head.log"), "the head to start", procs)
        procs.append(ray_start(f"--address={address}", "--num-cpus=1", env=env, log=logs / "node.log"))
        wait_for(lambda: started(logs / "node.log"), "the second node to start", procs)
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")

        def alive() -> list[dict]:
            return [n for n in ray.nodes() if n["Alive"]]

        wait_for(lambda: len(alive()) == 2, "the second node to join", procs)
        (node,) = [n["NodeID"] for n in alive() if "node:__internal_head__" not in n["Resources"]]
        ray.shutdown()  # the sweep connects by the address, as `python -m ecnb sweep --address` does
        yield address, node
    finally:
        ray.shutdown()
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group of the `ray start` this fixture started
                proc.wait()
        deadline = time.monotonic() + 30
        while of_cluster(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = of_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"processes of the cluster left behind: {[p.pid for p in left]}"


def test_a_sweep_runs_its_cell_on_a_cluster_started_with_ray_start(cluster, tmp_path):
    address, node = cluster
    root = tmp_path / "sweep"
    configs = sweep.cell_configs(sweep.grid(["digits"], [(3,)], [0]), root, **TINY, method_files=[str(EXAMPLE_METHOD)])
    lines: list[str] = []
    failed = sweep.run_sweep(configs, root, address=address, methods=[EXAMPLE_NAME], ablations=[],
                             notebooks=[NOTEBOOKS_DIR / NB01, NOTEBOOKS_DIR / NB02], log=lines.append)
    assert failed == {}, lines
    (config,) = configs.values()
    record = json.loads((Path(config.run_dir) / sweep.CELL_FILE).read_text())
    assert record["node"] == node, "the head has no CPU: the cell ran on the node that `ray start --address` started"
    assert json.loads((root / "sweep.json").read_text())["address"] == address
    tables = sweep.load(root)
    assert EXAMPLE_NAME in set(tables["results"]["method"]), "the cell loaded the method file on the node"
    assert EXAMPLE_NAME in set(tables["verdicts"]["method"])
    assert (root / "report.html").exists()

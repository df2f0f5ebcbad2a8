"""CPU thread rule (physical cores this process may use, minus the cores left free) with injected inputs."""

from __future__ import annotations

import pytest
import torch
from sr4zct.errors import ParameterError
from sr4zct.system.devices import set_cpu_threads
from sr4zct.system.threads import (
    LEAVE_CORES_ENV,
    WAIT_POLICY,
    cores_for_a_gui,
    cpu_thread_count,
    leave_cores,
    physical_cores,
    prepare_openmp,
    worker_environment,
)


def _cpuinfo(mapping: list[tuple[int, int]]) -> str:
    """/proc/cpuinfo text: logical CPU i on (physical id, core id) = mapping[i]."""
    blocks = []
    for i, (package, core) in enumerate(mapping):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: Test CPU\n"
            f"physical id\t: {package}\nsiblings\t: {len(mapping)}\ncore id\t\t: {core}\ncpu cores\t: 2\n"
        )
    return "\n".join(blocks) + "\n"


def test_hyperthreads_of_one_core_count_once():
    # 2 cores x 2 hyper-threads: logical 0, 2 on core 0; 1, 3 on core 1
    text = _cpuinfo([(0, 0), (0, 1), (0, 0), (0, 1)])
    assert physical_cores(text, cpus={0, 1, 2, 3}) == 2
    assert physical_cores(text, cpus={0, 2}) == 1  # affinity on the two threads of one core
    assert physical_cores(text, cpus={0, 1}) == 2


def test_cores_of_two_packages_with_the_same_core_id_are_different():
    text = _cpuinfo([(0, 0), (1, 0), (0, 1), (1, 1)])
    assert physical_cores(text, cpus={0, 1, 2, 3}) == 4
    assert physical_cores(text, cpus={0, 1}) == 2


def test_without_topology_every_usable_logical_cpu_counts():
    assert physical_cores("", cpus={0, 1, 2}) == 3
    assert physical_cores("processor : 0\nmodel name : x\n", cpus={0, 5}) == 2  # no core ids
    text = _cpuinfo([(0, 0), (0, 1)])
    assert physical_cores(text, cpus={0, 1, 7}) == 3  # a CPU the text does not describe: count logicals


def test_thread_count_is_the_cores_minus_those_left_free():
    assert cpu_thread_count(environ={}, cores=2) == 2
    assert cpu_thread_count(environ={LEAVE_CORES_ENV: "1"}, cores=2) == 1
    assert cpu_thread_count(environ={LEAVE_CORES_ENV: "1"}, cores=8) == 7
    assert cpu_thread_count(leave_free=1, environ={}, cores=4) == 3
    assert cpu_thread_count(leave_free=0, environ={LEAVE_CORES_ENV: "3"}, cores=4) == 4  # explicit wins
    assert cpu_thread_count(environ={LEAVE_CORES_ENV: "5"}, cores=2) == 1  # at least one thread
    assert cpu_thread_count(environ={LEAVE_CORES_ENV: " "}, cores=3) == 3


@pytest.mark.parametrize("bad", ["-1", "one", "1.5"])
def test_a_bad_leave_cores_value_is_named(bad):
    with pytest.raises(ParameterError, match=LEAVE_CORES_ENV):
        leave_cores({LEAVE_CORES_ENV: bad})


def test_set_cpu_threads_follows_the_environment(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(LEAVE_CORES_ENV, "1")
        assert set_cpu_threads() == max(1, physical_cores() - 1) == torch.get_num_threads()
        monkeypatch.delenv(LEAVE_CORES_ENV)
        assert set_cpu_threads() == physical_cores() == torch.get_num_threads()
        assert set_cpu_threads(leave_free=physical_cores()) == 1
        assert set_cpu_threads(3) == 3 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_is_left_as_torch_read_it(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(LEAVE_CORES_ENV, "0")
    assert set_cpu_threads() == before


def test_openmp_waits_passively_unless_the_user_chose(monkeypatch):
    env: dict[str, str] = {}
    prepare_openmp(env)
    assert env == {"OMP_WAIT_POLICY": WAIT_POLICY}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prepare_openmp(env) is False and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    # torch is loaded in this test process: its runtime has read the variable already
    assert prepare_openmp({}) is False


def test_worker_environment(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv(LEAVE_CORES_ENV, raising=False)
    assert worker_environment() == {"OMP_WAIT_POLICY": WAIT_POLICY}
    assert worker_environment(leave_free=1) == {"OMP_WAIT_POLICY": WAIT_POLICY, LEAVE_CORES_ENV: "1"}
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert worker_environment(leave_free=0) == {LEAVE_CORES_ENV: "0"}
    monkeypatch.setenv(LEAVE_CORES_ENV, "2")  # the user's own choice is passed on as it is
    assert worker_environment(leave_free=1) == {}


def test_a_gui_keeps_a_core_only_where_a_core_less_does_not_halve_the_run():
    assert [cores_for_a_gui(n) for n in (1, 2, 3, 4, 16)] == [0, 0, 0, 1, 1]
    assert cores_for_a_gui() in (0, 1)


def test_the_command_line_sets_passive_waiting_before_torch_loads():
    import os
    import subprocess
    import sys

    code = (
        "import os, sys\nos.environ.pop('OMP_WAIT_POLICY', None)\nfrom sr4zct.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[-2:] == [WAIT_POLICY, "False"]


def test_thread_rule_needs_no_torch():
    """The CLI and the worker prepare OpenMP before torch loads: the module must not import it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import sr4zct

    package_parent = str(Path(sr4zct.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]))
    code = "import sys, sr4zct.system.threads as t; t.cpu_thread_count(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"

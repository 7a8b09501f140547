"""Freed CPU memory kept for the next tensor (psa_zoo/_cpu_memory.py), observed as page faults.

glibc maps a 256 MiB block fresh from the kernel and unmaps it when freed, so every allocation of it
faults each of its 65,536 pages in again; once the process keeps freed memory, later allocations of the
same size reuse pages of earlier ones and fault (almost) none. Each case runs in its own process (the
setting is process-wide): it counts the faults of two such allocations, after a few others, before and
after the route under test switches the setting on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from psa_zoo._cpu_memory import ENV_VAR, glibc, keep_cpu_memory_unless_disabled

REPO = Path(__file__).resolve().parents[1]
PAGES = (256 << 20) // 4096


def _huge_pages_always() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[always]" in path.read_text()


glibc_only = pytest.mark.skipif(glibc() is None, reason="glibc's malloc only")
# the fault counts assume 4 KiB pages: with transparent huge pages for every mapping they are ~500x fewer
small_pages = pytest.mark.skipif(_huge_pages_always(), reason="transparent huge pages set to 'always'")

_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import torch

    def faults_of_later_allocations():
        # page faults of the 5th and 6th of six 256 MiB blocks, each written whole and freed: the first
        # ones may grow the heap (small objects allocated in between can take part of a freed block)
        for i in range(6):
            if i == 4:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            block = torch.ones(64 << 20)
            del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    from psa_zoo import _cpu_memory

    route, folder = sys.argv[1], sys.argv[2]
    before = faults_of_later_allocations()
    if route == "function":
        import psa_zoo
        assert psa_zoo.keep_cpu_memory() is True
    elif route == "cli":
        from psa_zoo.cli import main
        try:
            main(["info", "no_such_model"])  # any subcommand: the process is set up before it runs
        except SystemExit:
            pass
    elif route == "trainer":
        from pathlib import Path
        from psa_zoo.data.synthetic import make_pose_dataset
        from psa_zoo.train import TrainConfig, Trainer
        from psa_zoo.train.config import ConfigError
        from psa_zoo.train.pose import PoseTask

        data = make_pose_dataset(Path(folder) / "data", num_train=2, num_val=1, seed=0, image_size=(64, 64))
        out = Path(folder) / "run"
        out.mkdir()
        (out / "keep.txt").write_text("not a run")  # fit stops at the output check, after the set-up
        config = TrainConfig(model="hrnet_w18_psa_p", data=str(data), output_dir=str(out)).resolve()
        try:
            Trainer(PoseTask(config), config).fit()
        except ConfigError:
            pass
    print(before, faults_of_later_allocations(), _cpu_memory.mmap_threshold() or 0)
    """
)


_CASES = {  # name: (route, extra environment)
    "function": ("function", {}),
    "cli": ("cli", {}),
    "trainer": ("trainer", {}),
    "cli_off": ("cli", {ENV_VAR: "0"}),
}


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), ENV_VAR: "1", **extra}
    env.pop("THP_MEM_ALLOC_ENABLE", None)  # PyTorch's huge-page switch would change the page size
    return env


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> dict[str, tuple[int, int]]:
    """Every case's (faults before, faults after), the processes run side by side."""
    running = {}
    try:
        for name, (route, env) in _CASES.items():
            folder = tmp_path_factory.mktemp(name)
            running[name] = subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, route, str(folder)], env=_child_env(env),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        results = {}
        for name, process in running.items():
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, f"{name}: {stderr}"
            before, after, threshold = map(int, stdout.split()[-3:])
            if name != "cli_off" and threshold < 256 << 20:
                pytest.skip(
                    f"glibc set M_MMAP_THRESHOLD to {threshold} bytes only: 256 MiB blocks stay mapped"
                )
            results[name] = before, after
        return results
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@glibc_only
@small_pages
@pytest.mark.parametrize("route", ["function", "cli", "trainer"])
def test_each_route_makes_the_process_reuse_freed_memory(route, faults):
    before, after = faults[route]
    assert before >= 2 * 0.9 * PAGES  # glibc's default: each block comes fresh from the kernel
    assert after <= 0.05 * PAGES  # kept: the blocks reuse the pages of earlier ones


@glibc_only
@small_pages
def test_the_environment_variable_turns_it_off_for_the_command_line(faults):
    before, after = faults["cli_off"]
    assert before >= 2 * 0.9 * PAGES and after >= 2 * 0.9 * PAGES


def test_an_unreadable_environment_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ValueError, match=r"PSA_ZOO_KEEP_CPU_MEMORY must be 0 .* or 1 .*, got 'maybe'"):
        keep_cpu_memory_unless_disabled()


def test_zero_reports_nothing_set(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")
    assert keep_cpu_memory_unless_disabled() is False  # what it leaves alone: the cli_off case above

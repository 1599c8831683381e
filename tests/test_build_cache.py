"""The Verilator build cache: keyed by content, never shared while being written."""

import multiprocessing as mp
import os
import time
from pathlib import Path

from sim.build import cached_build, verilator_env, verilator_version


def _build_worker(root, key, out_q):
    os.environ["LLMACCEL_BUILD_DIR"] = root

    def builder(tmp, progress):
        with open(Path(root) / "builds.log", "a") as f:      # who really built
            f.write(f"{os.getpid()}\n")
        # write slowly, file by file: a reader of a half-written directory would see gaps
        for i in range(5):
            (tmp / f"part{i}").write_text(f"{key}-{i}")
            time.sleep(0.05)
    d = cached_build("unit", [key], builder, quiet=True)
    out_q.put((str(d), sorted(p.name for p in Path(d).iterdir())))


def test_parallel_builders_get_one_complete_directory(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_build_worker, args=(str(tmp_path), "same-key", q))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    dirs = {d for d, _ in results}
    assert len(dirs) == 1
    for _, files in results:
        assert files == ["DONE", "part0", "part1", "part2", "part3", "part4"]
    # one process built it, the others waited for it; no temporary directory is left
    assert len((tmp_path / "builds.log").read_text().split()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(dirs.pop()).name, "builds.log", ".locks"])


def test_key_changes_with_content(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMACCEL_BUILD_DIR", str(tmp_path))
    a = cached_build("unit", ["x"], lambda t, p: None, quiet=True)
    b = cached_build("unit", ["y"], lambda t, p: None, quiet=True)
    assert a != b and cached_build("unit", ["x"], lambda t, p: 1 / 0, quiet=True) == a


def test_verilator_quirks_handled():
    env = verilator_env()
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]
    assert Path(env["VERILATOR_ROOT"], "include", "verilated.mk").exists()
    assert verilator_version()[0].isdigit()

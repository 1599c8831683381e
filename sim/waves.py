"""Reading the waveforms the fast runner writes: VCD always, FST through ``pylibfst`` (an
optional PyPI package) when it is installed.

``read_waves(path)`` gives a ``Waves``: each signal's hierarchical name (``TOP.llmaccel_top.
compute.state``), its width and its value changes as ``(time, value)``, time in ps.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Waves", "read_waves", "read_vcd", "read_fst", "first_difference"]


@dataclass
class Waves:
    timescale_ps: int = 1
    widths: dict = field(default_factory=dict)      # name -> bits
    changes: dict = field(default_factory=dict)     # name -> [(time, value or None)]

    def times(self) -> list[int]:
        """Every time at which something was dumped (sorted)."""
        return sorted({t for ch in self.changes.values() for t, _ in ch})

    def value(self, name, time):
        """The value of ``name`` at ``time`` (the last change at or before it); None for
        X/Z or before its first dump."""
        ch = self.changes[name]
        i = bisect.bisect_right(ch, (time, float("inf"))) - 1
        return ch[i][1] if i >= 0 else None


def read_waves(path) -> Waves:
    path = Path(path)
    return read_fst(path) if path.suffix.lower() == ".fst" else read_vcd(path)


_UNITS = {"s": 10 ** 12, "ms": 10 ** 9, "us": 10 ** 6, "ns": 10 ** 3, "ps": 1}


def read_vcd(path) -> Waves:
    w = Waves()
    ids = {}        # identifier code -> [names]
    scope = []
    time = 0
    with open(path) as f:
        words = iter(f.read().split())
    for tok in words:
        if tok == "$timescale":
            spec = []
            for t in words:
                if t == "$end":
                    break
                spec.append(t)
            s = "".join(spec)
            num = int("".join(c for c in s if c.isdigit()) or 1)
            w.timescale_ps = max(1, num * _UNITS.get(s.lstrip("0123456789"), 1))
        elif tok == "$scope":
            _, name = next(words), next(words)
            scope.append(name)
            next(words)
        elif tok == "$upscope":
            scope.pop()
            next(words)
        elif tok == "$var":
            _, bits, code, name = next(words), int(next(words)), next(words), next(words)
            for t in words:
                if t == "$end":
                    break
            full = ".".join(scope + [name])
            ids.setdefault(code, []).append(full)
            w.widths[full] = bits
            w.changes[full] = []
        elif tok.startswith("$"):
            if tok not in ("$dumpvars", "$end", "$dumpall", "$dumpon", "$dumpoff"):
                for t in words:
                    if t == "$end":
                        break
        elif tok[0] == "#":
            time = int(tok[1:]) * w.timescale_ps
        elif tok[0] in "bB":
            _record(w, ids, next(words), tok[1:], time)
        elif tok[0] in "01xzXZ":
            _record(w, ids, tok[1:], tok[0], time)
    return w


def _record(w, ids, code, bits, time):
    value = None if any(c in "xzXZ" for c in bits) else int(bits, 2)
    for name in ids.get(code, ()):
        ch = w.changes[name]
        if ch and ch[-1][0] == time:
            ch[-1] = (time, value)
        else:
            ch.append((time, value))


def read_fst(path) -> Waves:
    try:
        import pylibfst
    except ImportError:
        raise ImportError("reading FST needs the pylibfst package (pip install pylibfst)")
    ffi, lib = pylibfst.ffi, pylibfst.lib
    fst = lib.fstReaderOpen(str(path).encode())
    if fst == ffi.NULL:
        raise ValueError(f"{path}: not an FST file")
    try:
        w = Waves()
        exp = lib.fstReaderGetTimescale(fst)
        w.timescale_ps = max(1, round(10 ** (exp + 12)))
        _, signals = pylibfst.get_scopes_signals2(fst)
        byhandle = {}
        for name, sig in signals.by_name.items():
            name = name.rsplit(" [", 1)[0]      # FST keeps the range in the name: VCD's names
            w.widths[name] = sig.length
            w.changes[name] = []
            byhandle.setdefault(sig.handle, []).append(name)
        lib.fstReaderSetFacProcessMaskAll(fst)

        def cb(_data, time, handle, value):
            bits = ffi.string(value).decode()
            value = None if any(c in "xzXZ" for c in bits) else int(bits, 2)
            for name in byhandle.get(handle, ()):
                ch = w.changes[name]
                t = time * w.timescale_ps
                if ch and ch[-1][0] == t:
                    ch[-1] = (t, value)
                else:
                    ch.append((t, value))
        pylibfst.fstReaderIterBlocks(fst, cb)
        return w
    finally:
        lib.fstReaderClose(fst)


def first_difference(a: Waves, b: Waves, *, prefix=""):
    """The earliest time at which a signal common to ``a`` and ``b`` (and starting with
    ``prefix``) differs, and the names that differ then: ``(time, [names])``, or
    ``(None, [])`` when none does."""
    best, names = None, []
    for name in sorted(set(a.changes) & set(b.changes)):
        if not name.startswith(prefix):
            continue
        for t in sorted({t for t, _ in a.changes[name]} | {t for t, _ in b.changes[name]}):
            if best is not None and t > best:
                break
            if a.value(name, t) != b.value(name, t):
                if best is None or t < best:
                    best, names = t, [name]
                elif t == best:
                    names.append(name)
                break
    return best, names

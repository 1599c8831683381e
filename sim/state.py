"""State enumeration: which of the model's variables are flops and memories.

Amaranth emits every register and memory write as a non-blocking assignment (``x <= ...``)
inside a clocked ``always`` block, and all combinational logic with blocking assignments, so
the left-hand sides of ``<=`` in each module are exactly that module's state. Verilator's
scope for module ``\\llmaccel_top.compute.systolic.array`` is ``TOP.llmaccel_top.compute.systolic.array``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["StateElement", "state_elements", "flops_by_module", "MemPort", "memory_ports"]

_MODULE = re.compile(r"^module\s+(\\\S+|[A-Za-z_][\w$]*)")
_NBA = re.compile(r"^\s*(?:if\s*\(.*\)\s*)?(\\\S+ |[A-Za-z_][\w$]*)\s*(?:\[.*\])?\s*<=")


@dataclass(frozen=True)
class StateElement:
    """A flop (depth 1) or memory (depth > 1) of the design.

    ``name`` is hierarchical below the top (``compute.systolic.array.pe0_0_acc``); ``structure`` is
    its enclosing instance path (``compute.systolic.array``), the unit fault injection groups by.
    """
    name: str
    width: int
    depth: int
    var_index: int

    @property
    def structure(self):
        return self.name.rpartition(".")[0] or "top"

    @property
    def bits(self):
        return self.width * self.depth


@lru_cache(maxsize=8)
def flops_by_module(verilog: str) -> dict:
    out: dict = {}
    module = None
    for line in verilog.splitlines():
        mm = _MODULE.match(line)
        if mm:
            module = mm.group(1).lstrip("\\").strip()
            out.setdefault(module, set())
            continue
        if module is None or line.lstrip().startswith("assign"):
            continue
        m = _NBA.match(line)
        if m:
            out[module].add(m.group(1))
    return out


def _clean(name):
    return name.lstrip("\\").strip().replace("$", "_")


def state_elements(config, variables, verilog=None) -> list[StateElement]:
    """Flops and memories among ``variables`` (the runner's public variables)."""
    if verilog is None:
        import hw
        verilog = hw.verilog(config)
    flops = flops_by_module(verilog)
    out = []
    for v in variables:
        scope, _, var = v.name.rpartition(".")
        if not scope.startswith("TOP.") or scope == "TOP.TOP":
            continue
        # escaped names keep their trailing space in Verilator's map; struct members
        # ("\\x.field ") are views of flattened nets, never storage
        module = scope[len("TOP."):]
        if var in flops.get(module, ()):
            hier = module.partition(".")[2]
            name = f"{hier}.{_clean(var)}" if hier else _clean(var)
            out.append(StateElement(name, v.bits, v.depth, v.index))
    return out


# --- memory ports: which entry each memory read/write touches, cycle by cycle -----------------
_ID = r"(\\\S+ |[A-Za-z_][\w$]*)"
_MEMDECL = re.compile(r"^\s*reg\s+\[\d+:0\]\s+" + _ID + r"\s*\[\d+:0\];$")
_ADDR = _ID + r"\s*(?:\[(\d+):(\d+)\])?"


@dataclass(frozen=True)
class MemPort:
    """One read or write port of a memory, as Amaranth emits it:

    ``always @(posedge clk) begin  if (EN) begin  data <= MEM[ADDR[hi:lo]];`` (read) or
    ``MEM[ADDR[hi:lo]] <= data;`` (a whole-word write; ``kind`` ``p``: a part-word write).
    ``en`` is None when the access happens every cycle."""
    kind: str           # "r", "w" or "p"
    en: str | None      # raw Verilog names, as the model's variable map spells them
    addr: str
    lo: int
    width: int | None   # address bits used (None: all)


def _indent(line):
    return len(line) - len(line.lstrip(" "))


@lru_cache(maxsize=8)
def memory_ports(verilog: str) -> dict:
    """``{(module, memory): [MemPort] or None}``: every access to every memory, or None when
    some access does not have the plain shape above (the memory then gets no trace)."""
    out: dict = {}
    module, lines, start = None, verilog.splitlines(), 0
    mods = []
    for i, line in enumerate(lines + ["module \\end"]):
        mm = _MODULE.match(line)
        if mm:
            if module is not None:
                mods.append((module, start, i))
            module, start = mm.group(1).lstrip("\\").strip(), i
    for module, a, b in mods:
        body = lines[a:b]
        mems = [m.group(1) for m in map(_MEMDECL.match, body) if m]
        for mem in mems:
            use = re.compile(r"(?<![\w$\\])" + re.escape(mem.strip()) +
                             (r" " if mem.endswith(" ") else r"") + r"\s*\[")
            ports, ok = [], True
            for j, line in enumerate(body):
                if not use.search(line) or _MEMDECL.match(line):
                    continue
                if re.match(r"^\s*" + re.escape(mem) + r"\s*\[\d+\]\s*=", line):
                    continue                        # the initial block
                port = _port(body, j, mem)
                if port is None:
                    ok = False
                    break
                ports.append(port)
            out[(module, mem)] = ports if ok else None
    return out


def _port(body, j, mem):
    line = body[j]
    m = (re.match(r"^\s*" + _ID + r"\s*<=\s*" + re.escape(mem) + r"\s*\[" + _ADDR + r"\];$",
                  line))
    if m:
        kind, addr, hi, lo = "r", m.group(2), m.group(3), m.group(4)
    else:
        m = re.match(r"^\s*" + re.escape(mem) + r"\s*\[" + _ADDR + r"\]\s*(\[[^\]]*\])?\s*<=",
                     line)
        if not m:
            return None
        kind, addr, hi, lo = ("p" if m.group(4) else "w"), m.group(1), m.group(2), m.group(3)
    # the enclosing statement: `if (EN)` directly inside `always @(posedge ...)`, or the
    # always block itself
    ind = _indent(line)
    k = j - 1
    while k >= 0 and (_indent(body[k]) >= ind or not body[k].strip()):
        k -= 1
    en = None
    if k >= 0:
        c = re.match(r"^\s*if\s*\(" + _ID + r"\s*\)(\s*begin)?$", body[k])
        if c:
            en, ind = c.group(1), _indent(body[k])
            k -= 1
            while k >= 0 and (_indent(body[k]) >= ind or not body[k].strip()):
                k -= 1
    if k < 0 or not re.match(r"^\s*always\s*@\(posedge\s+\S+\)\s*begin$", body[k]):
        return None
    return MemPort(kind, en, addr, int(lo) if lo else 0,
                   int(hi) - int(lo) + 1 if hi else None)

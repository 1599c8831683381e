"""State enumeration: which of the model's variables are flops and memories.

Amaranth emits every register and memory write as a non-blocking assignment (``x <= ...``)
inside a clocked ``always`` block, and all combinational logic with blocking assignments, so
the left-hand sides of ``<=`` in each module are exactly that module's state. Verilator's
scope for module ``\\llmaccel_top.compute.array`` is ``TOP.llmaccel_top.compute.array``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["StateElement", "state_elements", "flops_by_module"]

_MODULE = re.compile(r"^module\s+(\\\S+|[A-Za-z_][\w$]*)")
_NBA = re.compile(r"^\s*(?:if\s*\(.*\)\s*)?(\\\S+ |[A-Za-z_][\w$]*)\s*(?:\[.*\])?\s*<=")


@dataclass(frozen=True)
class StateElement:
    """A flop (depth 1) or memory (depth > 1) of the design.

    ``name`` is hierarchical below the top (``compute.array.pe0_0_acc``); ``structure`` is
    its enclosing instance path (``compute.array``), the unit fault injection groups by.
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

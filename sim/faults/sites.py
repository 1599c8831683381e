"""Fault sites: every flop and memory of the design (from the fast runner's state
enumeration, never a hand-written list), grouped into structures by hierarchy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["STRUCTURE_RULES", "Structure", "fault_sites", "select_structures", "structure_of"]

#: (pattern on the hierarchical element name, structure); the first match wins.
STRUCTURE_RULES = [
    (r"^compute\.systolic\.array\.pe\d+_\d+_(acc|racc)$", "accumulators"),
    (r"^compute\.systolic\.", "array"),
    (r"^compute\.lut\.", "lut_engine"),
    (r"^compute\.bitserial\.", "bitserial_engine"),
    (r"^compute\.requant\.", "requant"),
    (r"^compute\.", "compute_ctrl"),
    (r"^(fetch|q_load|q_compute|q_store)\b", "insn_queues"),
    (r"^(load|store|arbiter)\b", "dma"),
    (r"^act_bank", "act_sp"),
    (r"^wgt_mem", "wgt_sp"),
    (r"^acc_mem", "acc_sp"),
    (r"^scale_mem", "scale_sp"),
    (r"^cnt_", "counters"),
    (r".*", "control"),
]
_RULES = [(re.compile(p), s) for p, s in STRUCTURE_RULES]
# a top-level memory read register: `_3_ <= act_bank0[...]` belongs to that scratchpad
_READ_REG = re.compile(r"^\s*(\\\S+ |[A-Za-z_][\w$]*)\s*<=\s*(\w+)\s*\[")


def structure_of(name: str, read_regs=None) -> str:
    name = (read_regs or {}).get(name, name)
    for rx, s in _RULES:
        if rx.search(name):
            return s
    return "control"


@dataclass
class Structure:
    """A group of state elements; ``bits`` counts every bit of every entry."""
    name: str
    elements: list = field(default_factory=list)

    @property
    def bits(self):
        return sum(e.bits for e in self.elements)

    def locate(self, bit_index):
        """Map a bit number in [0, bits) to (element, entry index, bit)."""
        offs = np.cumsum([0] + [e.bits for e in self.elements])
        k = int(np.searchsorted(offs, bit_index, side="right")) - 1
        e = self.elements[k]
        rel = int(bit_index - offs[k])
        return e, rel // e.width, rel % e.width


def _read_regs(verilog):
    top = verilog[verilog.index("module llmaccel_top"):]
    out = {}
    for line in top.splitlines():
        m = _READ_REG.match(line)
        if m:
            out[m.group(1).lstrip("\\").strip().replace("$", "_")] = m.group(2)
    return out


def fault_sites(runner) -> dict[str, Structure]:
    """Structures of ``runner``'s design (a FastRunner), in a stable order."""
    from sim.fast import TOP
    regs = _read_regs((runner.build_dir / f"{TOP}.v").read_text())
    out: dict[str, Structure] = {}
    for e in sorted(runner.state_elements(), key=lambda e: e.name):
        s = structure_of(e.name, regs)
        out.setdefault(s, Structure(s)).elements.append(e)
    return dict(sorted(out.items()))


def select_structures(sites, structures=None) -> dict[str, Structure]:
    """Only the named ``structures`` of ``sites`` (all when none are named); an unknown name
    is an error."""
    if not structures:
        return sites
    unknown = sorted(set(structures) - set(sites))
    if unknown:
        raise ValueError(f"unknown structure {unknown[0]!r}; this design has "
                         f"{', '.join(sites)}")
    return {k: v for k, v in sites.items() if k in structures}

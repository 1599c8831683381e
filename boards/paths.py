"""A survey of every register-to-register path in a synthesized ECP5 netlist (the Yosys
JSON a board build leaves as ``top.json``): nextpnr reports one critical path per clock,
this lists every group of endpoints whose estimated delay exceeds a budget, worst first,
each with one path, so that a timing push can see all the work before the next 15-minute
build.

The delay model is a static estimate, not a timing analysis: nextpnr's ECP5 (speed 6)
figures for the cells (LUT4 0.24-0.4 ns, block RAM clock-to-out 5.8 ns, MULT18X18D 3.9 ns,
carry 0.06 ns per cell inside a chain) and an unplaced guess for routing, 1.5 ns per hop
growing with the net's fanout (placed routes on the ``ulx3s`` build were 0.6-5.8 ns a hop).
Its ranking is what counts: endpoints it puts high are the ones nextpnr reported, build
after build.

    python -m boards.paths BUILD_DIR/top.json [--budget NS] [--top N]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import OrderedDict, defaultdict
from itertools import takewhile

__all__ = ["survey", "main"]

#: Cells whose outputs start paths and whose inputs end them (clock-to-out in ns).
SEQUENTIAL = {"TRELLIS_FF": 0.52, "DP16KD": 5.83, "PDPW16KD": 5.83}
CLOCKS = {"CLK", "CLKA", "CLKB", "CLKW", "CLKR"}


def _route(fanout):
    return 1.5 + 0.3 * math.log2(max(fanout, 1))


def _cell_delay(kind, pin, out):
    if kind == "LUT4":
        return 0.4
    if kind in ("PFUMX", "L6MUX21"):
        return 0.45 if pin == "SD" else 0.25
    if kind == "CCU2C":
        if pin == "CIN":
            return 0.06 if out == "COUT" else 0.35
        return 0.5 if out == "COUT" else 0.45
    if kind == "MULT18X18D":
        return 3.93
    if kind == "ALU54B":
        return 3.0
    if kind == "TRELLIS_DPR16X4":
        return 1.2
    return 0.5


def _dedicated(kind, pin):
    """Inputs on dedicated wires (no general routing): carry-in, wide-mux data."""
    return (kind == "CCU2C" and pin == "CIN") or (kind in ("PFUMX", "L6MUX21") and pin != "SD")


def survey(netlist: dict, budget_ns: float = 10.0):
    """Groups of endpoints estimated over ``budget_ns``, worst first: a list of dicts with
    ``delay_ns``, ``endpoints``, ``source`` and ``sink`` (names with digits as ``#``), and
    ``path`` (one path: ``(arrival_ns, cell_type, net)`` from the source)."""
    modules = netlist["modules"]
    top = next((m for m in modules.values() if m.get("attributes", {}).get("top")), None)
    if top is None:
        if len(modules) != 1:
            raise ValueError("the netlist has no top module")
        top = next(iter(modules.values()))
    cells = top["cells"]
    names = {}
    for n, v in top["netnames"].items():
        for b in v["bits"]:
            if isinstance(b, int) and (b not in names or len(n) < len(names[b])):
                names[b] = n
    drivers, loads = {}, defaultdict(int)
    for cn, c in cells.items():
        for p, bits in c["connections"].items():
            out = c["port_directions"].get(p) == "output"
            for b in bits:
                if isinstance(b, int):
                    if out:
                        drivers[b] = (cn, p)
                    else:
                        loads[b] += 1

    arrival, pred = {}, {}

    def comb_inputs(c):
        kind = c["type"]
        for p, bits in c["connections"].items():
            if c["port_directions"].get(p) != "input" or p in CLOCKS:
                continue
            if kind == "TRELLIS_DPR16X4" and not p.startswith("RAD"):
                continue        # a LUT RAM reads asynchronously, writes on the clock
            for b in bits:
                if isinstance(b, int):
                    yield p, b

    def arrive(bit):
        # an iterative depth-first walk: paths run thousands of cells deep (carry chains);
        # an input still on the walk (a combinational loop) counts from zero
        if bit in arrival:
            return arrival[bit]
        stack, open_ = [(bit, False)], set()
        while stack:
            b, expanded = stack.pop()
            if b in arrival:
                continue
            d = drivers.get(b)
            if d is None or cells[d[0]]["type"] in SEQUENTIAL:
                arrival[b] = SEQUENTIAL[cells[d[0]]["type"]] if d else 0.0
                pred[b] = None
                continue
            c = cells[d[0]]
            if not expanded:
                open_.add(b)
                stack.append((b, True))
                stack.extend((ib, False) for _, ib in comb_inputs(c)
                             if ib not in arrival and ib not in open_)
                continue
            open_.discard(b)
            best, via = 0.0, None
            for p, ib in comb_inputs(c):
                hop = 0.0 if _dedicated(c["type"], p) else _route(loads[ib])
                t = arrival.get(ib, 0.0) + hop + _cell_delay(c["type"], p, d[1])
                if t > best:
                    best, via = t, ib
            arrival[b], pred[b] = best, via
        return arrival[bit]

    ends = []
    for cn, c in cells.items():
        kind = c["type"]
        if kind not in SEQUENTIAL and kind != "TRELLIS_DPR16X4":
            continue
        for p, bits in c["connections"].items():
            if c["port_directions"].get(p) != "input" or p in CLOCKS:
                continue
            if kind == "TRELLIS_DPR16X4" and p.startswith("RAD"):
                continue
            for b in bits:
                if isinstance(b, int):
                    ends.append((arrive(b) + _route(loads[b]), cn, p, b))
    ends.sort(key=lambda e: -e[0])

    def path(b):
        out, seen = [], set()
        while b is not None and b not in seen:
            seen.add(b)
            d = drivers.get(b)
            out.append((round(arrival.get(b, 0.0), 2), cells[d[0]]["type"] if d else "input",
                        names.get(b, str(b))))
            b = pred.get(b)
        return out[::-1]

    def shape(name):
        return re.sub(r"\d+", "#", name)

    def key(end):
        _, cn, p, b = end
        return (shape(path(b)[0][2]), shape(f"{cells[cn]['type']}.{p} {names.get(b, '?')}"))

    return group_endpoints(takewhile(lambda e: e[0] >= budget_ns, ends), key,
                           lambda end: path(end[3]))


def group_endpoints(ends, key, path):
    """Endpoints (tuples whose first item is the delay in ns), worst first, grouped by
    ``key(end) -> (source, sink)``: a dict per group, worst first, with its worst delay,
    the number of endpoints, source, sink and ``path(end)`` of its worst one."""
    groups = OrderedDict()
    for end in ends:
        k = key(end)
        if k not in groups:
            groups[k] = {"delay_ns": round(end[0], 2), "endpoints": 0, "source": k[0],
                         "sink": k[1], "path": path(end)}
        groups[k]["endpoints"] += 1
    return list(groups.values())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m boards.paths",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("netlist", help="a synthesized ECP5 netlist (a board build's top.json)")
    ap.add_argument("--budget", type=float, default=10.0, help="clock period in ns (10)")
    ap.add_argument("--top", type=int, default=20, help="groups to print (20)")
    args = ap.parse_args(argv)
    try:
        with open(args.netlist) as f:
            netlist = json.load(f)
        groups = survey(netlist, args.budget)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"paths: cannot survey {args.netlist}: {e}", file=sys.stderr)
        return 2
    n = sum(g["endpoints"] for g in groups)
    print(f"{n} endpoints in {len(groups)} groups estimated over {args.budget} ns "
          f"(a static estimate; nextpnr's report is the measurement)")
    for g in groups[:args.top]:
        print(f"\n{g['delay_ns']:6.2f} ns  x{g['endpoints']}  {g['source']} -> {g['sink']}")
        for t, kind, net in g["path"]:
            if kind == "CCU2C" and "COUT" in net:
                continue            # inside a carry chain
            print(f"        {t:6.2f}  {kind:11s} {net[:96]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Routed timing: every register-to-register path of a placed and routed design, from the
SDF that nextpnr writes (``--sdf``), with its measured routing delays.

nextpnr reports one critical path per clock. A timing push needs all of them: how many
endpoints fail, in which parts of the design, by how much. This reads the SDF's cell delays
(``IOPATH``), routed net delays (``INTERCONNECT``) and setup checks, and lists the endpoint
groups over a budget, worst first, each with its worst path -- the same figures nextpnr's
own analysis uses, so the worst group is its critical path. One thing the SDF does not
carry: clock skew (its clock nets have no delay), which nextpnr adds to a path whose
sink's clock arrives early (up to about a nanosecond into an iCE40 SPRAM), so its critical
path may be that much longer than this one.

    python -m boards.sta BUILD_DIR/top.sdf [--budget NS] [--top N]

Board builds write ``top.sdf`` next to the bitstream; a build that misses its clock prints
the worst groups from it (``boards.targets``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from itertools import takewhile

from .paths import group_endpoints

__all__ = ["parse_sdf", "analyse", "shape", "main"]

#: A cell's clock inputs: an arc from one starts a path (clock-to-out).
CLOCKS = {"CLK", "CLKA", "CLKB", "CLKW", "CLKR", "WCK", "CLKI"}

_TOKEN = re.compile(r'\(|\)|"[^"]*"|(?:\\.|[^\s()"])+')


def _tokens(text):
    for m in _TOKEN.finditer(text):
        yield m.group(0)


def _unescape(name):
    """An SDF name as nextpnr knows it, without Yosys' leading ``\\`` of public names."""
    return re.sub(r"\\(.)", r"\1", name).removeprefix("\\")


def _worst(triples):
    """The largest figure of ``(min:typ:max)`` delay triples, in ns (the SDF is in ps)."""
    best = 0.0
    for t in triples:
        for v in t.strip("()").split(":"):
            if v:
                best = max(best, float(v))
    return best


def parse_sdf(text):
    """``(arcs, checks)``: ``arcs`` maps an input pin ``inst/port`` to ``[(from_pin, ns)]``
    (a cell's own arcs and the routed nets into it); a clocked output's arc starts at the
    pseudo-pin ``inst/@clk``. ``checks`` maps a clocked input pin to its setup time (ns).
    The SDF's timescale is honoured (nextpnr writes picoseconds)."""
    arcs, checks = defaultdict(list), {}
    scale = 1.0
    stack = []          # the open lists, innermost last
    inst = ""
    for tok in _tokens(text):
        if tok == "(":
            stack.append([])
            continue
        if tok != ")":
            if stack:
                stack[-1].append(tok)
            continue
        item = stack.pop()
        if stack:
            stack[-1].append(item)
        if not item or not isinstance(item[0], str):
            continue
        key = item[0].upper()
        if key == "TIMESCALE":
            unit = "".join(x for x in item[1:] if isinstance(x, str))
            num = re.match(r"([\d.]+)?\s*(\w+)", unit)
            factor = float(num.group(1) or 1)
            scale = factor * {"ps": 1e-3, "ns": 1.0, "us": 1e3}.get(num.group(2).lower(), 1.0)
        elif key == "INSTANCE":
            inst = _unescape(item[1]) if len(item) > 1 and isinstance(item[1], str) else ""
        elif key == "IOPATH":
            src, dst = item[1], item[2]
            if isinstance(src, list):             # (posedge CLK)
                src = src[-1]
            clocked = src.upper() in CLOCKS
            src_pin = f"{inst}/@clk" if clocked else f"{inst}/{_unescape(src)}"
            delays = ["(" + ":".join(x for x in t if isinstance(x, str)) + ")"
                      for t in item[3:] if isinstance(t, list)]
            arcs[f"{inst}/{_unescape(dst)}"].append((src_pin, _worst(delays) * scale))
        elif key == "INTERCONNECT":
            delays = ["(" + ":".join(x for x in t if isinstance(x, str)) + ")"
                      for t in item[3:] if isinstance(t, list)]
            arcs[_pin(item[2])].append((_pin(item[1]), _worst(delays) * scale))
        elif key in ("SETUP", "SETUPHOLD"):
            pin = item[1]
            if isinstance(pin, list):       # (posedge D): the data edge
                pin = pin[-1]
            setup = item[3] if len(item) > 3 and isinstance(item[3], list) else []
            ns = _worst(["(" + ":".join(x for x in setup if isinstance(x, str)) + ")"])
            key_pin = f"{inst}/{_unescape(pin)}"
            checks[key_pin] = max(checks.get(key_pin, 0.0), ns * scale)
    if stack:       # (nextpnr writes it last: a build still running, or cut off)
        raise ValueError("truncated SDF: it ends inside an open list")
    return arcs, checks


def _pin(text):
    """An INTERCONNECT end ``inst/port`` (the instance's own ``/`` escaped)."""
    parts = re.split(r"(?<!\\)/", text)
    return f"{_unescape('/'.join(parts[:-1]))}/{_unescape(parts[-1])}"


def shape(name):
    """A name with its numbers as ``#`` and without a trailing ``_#`` (the bits Yosys
    numbers): the pieces of a bus or array group together."""
    return re.sub(r"(_#)+(?=/|$)", "", re.sub(r"\d+", "#", name))


def analyse(arcs, checks, budget_ns=10.0):
    """``(groups, endpoints, critical_ns)``: the groups of endpoints whose arrival plus
    setup exceeds ``budget_ns``, worst first (dicts with ``delay_ns``, ``endpoints`` over
    the budget, ``source``, ``sink`` and ``path``: ``(arrival_ns, pin)`` from the launching
    register's clock), how many endpoints were timed, and the critical path's delay."""
    arrival, pred = {}, {}

    def arrive(pin):
        stack, open_ = [(pin, False)], set()
        while stack:
            p, expanded = stack.pop()
            if p in arrival:
                continue
            if p.endswith("/@clk"):
                arrival[p], pred[p] = 0.0, None
                continue
            ins = arcs.get(p, ())
            if not expanded:
                open_.add(p)
                stack.append((p, True))
                # a pin still on the walk closes a combinational loop: it counts from zero
                stack.extend((q, False) for q, _ in ins if q not in arrival and q not in open_)
                continue
            open_.discard(p)
            best, via = None, None
            for q, d in ins:
                if q in arrival and arrival[q] is not None and (
                        best is None or arrival[q] + d > best):
                    best, via = arrival[q] + d, q
            arrival[p], pred[p] = best, via      # None: not reached from a register
        return arrival[pin]

    ends = []
    for pin, setup in checks.items():
        t = arrive(pin)
        if t is not None:
            ends.append((t + setup, pin))
    ends.sort(key=lambda e: -e[0])

    def path(p):
        out = []
        while p is not None:
            out.append((round(arrival[p], 2), p))
            p = pred.get(p)
        return out[::-1]

    def source(p):
        while pred.get(p) is not None:
            p = pred[p]
        return p.rsplit("/", 1)[0]

    groups = group_endpoints(takewhile(lambda e: e[0] > budget_ns, ends),
                             lambda e: (shape(source(e[1])), shape(e[1])),
                             lambda e: path(e[1]))
    return groups, len(ends), (round(ends[0][0], 2) if ends else 0.0)


def report(groups, budget_ns, top, total=None, out=sys.stdout):
    n = sum(g["endpoints"] for g in groups)
    of = f" of {total}" if total is not None else ""
    print(f"{n}{of} endpoints in {len(groups)} groups over {budget_ns} ns "
          f"(routed delays from nextpnr's SDF)", file=out)
    for g in groups[:top]:
        print(f"\n{g['delay_ns']:6.2f} ns  x{g['endpoints']}  {g['source']} -> {g['sink']}",
              file=out)
        last = None
        for t, pin in g["path"]:
            inst = pin.rsplit("/", 1)[0]
            if inst == last or "$CCU2_COMB" in inst and "FCI" in pin:
                continue         # a cell's own input, or inside a carry chain
            last = inst
            print(f"        {t:6.2f}  {pin[:110]}", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m boards.sta",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("sdf", help="nextpnr's SDF of a routed design (a board build's top.sdf)")
    ap.add_argument("--budget", type=float, default=10.0, help="clock period in ns (10)")
    ap.add_argument("--top", type=int, default=20, help="groups to print (20)")
    args = ap.parse_args(argv)
    try:
        with open(args.sdf) as f:
            arcs, checks = parse_sdf(f.read())
        if not checks:
            raise ValueError("no setup checks (not an SDF of a clocked design)")
        groups, total, _ = analyse(arcs, checks, args.budget)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
        print(f"sta: cannot analyse {args.sdf}: {e}", file=sys.stderr)
        return 2
    report(groups, args.budget, args.top, total)
    return 0


if __name__ == "__main__":
    sys.exit(main())

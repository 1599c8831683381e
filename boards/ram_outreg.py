"""Registers after an ECP5 block RAM's read port moved into the RAM (DP16KD ``OUTREG``).

A DP16KD's read data leaves its output latch 5.8 ns after the clock (nextpnr's timing
model, speed 6); with the block's own output register (``REGMODE = OUTREG``) it leaves
that register 0.96 ns after the clock. Yosys never uses that register: it maps a read
port and leaves the register the design puts after it in the fabric, so the 5.8 ns and
the wire to the fabric register share one cycle.

:func:`absorb` finds the read ports whose every used data bit feeds one fabric flip-flop
and nothing else, and moves those flip-flops into the block: the same cycle, the same
value. In a DP16KD the output register loads its latch's word at a clock edge while
``OCE`` is high (Lattice TN1264, "ECP5 and ECP5-5G Memory Usage Guide"); the latch loads
a read's word while ``CE`` is high. A fabric register ``Q <= CE_ff ? DO : Q`` on the
same clock is therefore the output register with ``OCE = CE_ff``. Only flip-flops that
mean exactly that are taken: the RAM's clock (not inverted), no set or reset (``LSR``
tied low: the block's reset would clear its latch too), initial value 0 (the register
after configuration), one clock enable shared by the port's flip-flops, and a RAM port
whose own reset is tied low. Anything else is left in the fabric.

In the 36-bit pseudo-dual-port mode the read word leaves on both ports' pins; Yosys
drives the read enable on ``CEB``/``OCEB`` and ties ``OCEA`` low. Both halves get the
output register and the flip-flops' enable (``REGMODE_A``/``_B``, ``OCEA``/``OCEB``),
so whichever the block uses for which half, the word is registered as one.

It works on the netlist Yosys writes for nextpnr (``top.json``) and runs between the two
in a board build asked for it (``llmaccel bitstream --ram-outreg``, boards/targets.py):
``python -m boards.ram_outreg top.json``.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["absorb", "main"]

_FF = "TRELLIS_FF"


def _param(cell, name, default=""):
    """A cell parameter as text (Yosys pads string parameters that look like binary
    numbers with a trailing space)."""
    return str(cell["parameters"].get(name, default)).strip()


def _width(cell, port):
    raw = _param(cell, f"DATA_WIDTH_{port}", "18")
    return int(raw, 2) if set(raw) <= {"0", "1"} and len(raw) > 8 else int(raw)


def _loads(cells, ports):
    """bit -> [(cell name, port)] of every cell input, and the set of module port bits."""
    loads = {}
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c["connections"].items():
            if dirs.get(port) == "input":
                for b in bits:
                    if isinstance(b, int):
                        loads.setdefault(b, []).append((name, port))
    outside = {b for p in ports.values() for b in p["bits"] if isinstance(b, int)}
    return loads, outside


def _register_of(cells, loads, outside, bit, clk):
    """The flip-flop that is ``bit``'s one load, if it is a plain register on ``clk``;
    returns (cell name, enable: a bit, or "1") or None."""
    if bit in outside:
        return None
    users = loads.get(bit, [])
    if len(users) != 1 or users[0][1] != "DI":
        return None
    name = users[0][0]
    ff = cells[name]
    conn = ff["connections"]
    if (ff["type"] != _FF or conn.get("CLK") != [clk] or _param(ff, "CLKMUX", "CLK") != "CLK"
            or _param(ff, "REGSET", "RESET") != "RESET"):
        return None
    lsr, lsrmux = conn.get("LSR", ["0"]), _param(ff, "LSRMUX", "LSR")
    if not (lsrmux == "0" or (lsrmux == "LSR" and lsr == ["0"])):
        return None
    cemux = _param(ff, "CEMUX", "CE")
    if cemux == "1" or (cemux == "CE" and conn.get("CE", ["1"]) == ["1"]):
        return name, "1"
    if cemux == "CE" and isinstance(conn.get("CE", [None])[0], int):
        return name, conn["CE"][0]
    return None


def absorb(netlist: dict, top: str = "top") -> list[tuple[str, int]]:
    """Move the registers after block RAM read ports into the RAMs (in place); returns
    ``(RAM name, registers moved)`` for each port that took them."""
    mod = netlist["modules"][top]
    cells = mod["cells"]
    loads, outside = _loads(cells, mod.get("ports", {}))
    done = []
    for name in [n for n, c in cells.items() if c["type"] == "DP16KD"]:
        ram = cells[name]
        pdp = _width(ram, "B") == 36 or _width(ram, "A") == 36
        # (read port side, the pins whose data it gives)
        groups = [("B", ("A", "B"))] if pdp else [("A", ("A",)), ("B", ("B",))]
        for side, halves in groups:
            conn = ram["connections"]
            clk = conn.get(f"CLK{side}", [None])[0]
            clkmux = _param(ram, f"CLK{side}MUX", f"CLK{side}")
            if (not isinstance(clk, int) or clkmux != f"CLK{side}"
                    or any(conn.get(f"RST{h}", ["0"]) != ["0"] for h in halves)
                    or any(_param(ram, f"REGMODE_{h}", "NOREG") != "NOREG" for h in halves)
                    or (pdp and conn.get("CLKA", [None])[0] != clk)):
                continue
            pins = [p for h in halves for p in conn if p.startswith(f"DO{h}")]
            used = [p for p in pins if isinstance(conn[p][0], int) and conn[p][0] in loads]
            if not used:
                continue
            regs = [_register_of(cells, loads, outside, conn[p][0], clk) for p in used]
            if any(r is None for r in regs) or len({en for _, en in regs}) != 1:
                continue
            en = regs[0][1]
            for p, (ff, _) in zip(used, regs):
                conn[p] = [cells[ff]["connections"]["Q"][0]]
                del cells[ff]
            for h in halves:
                ram["parameters"][f"REGMODE_{h}"] = "OUTREG"
                conn[f"OCE{h}"] = [en]
            done.append((name, len(used)))
    return done


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m boards.ram_outreg",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("netlist", help="Yosys' JSON netlist for nextpnr (rewritten in place)")
    ap.add_argument("--top", default="top", help="the top module (top)")
    args = ap.parse_args(argv)
    try:
        with open(args.netlist) as f:
            netlist = json.load(f)
        done = absorb(netlist, args.top)
    except (OSError, ValueError, KeyError) as e:
        print(f"ram_outreg: cannot rewrite {args.netlist}: {e}", file=sys.stderr)
        return 2
    with open(args.netlist, "w") as f:
        json.dump(netlist, f)
    n = sum(k for _, k in done)
    print(f"ram_outreg: {n} registers moved into the output registers of "
          f"{len(done)} block RAM read ports")
    return 0


if __name__ == "__main__":
    sys.exit(main())

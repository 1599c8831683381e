"""Hardware protections that turn soft errors into detected errors (the error flag).

* Scratchpad parity (``AccelConfig.parity``): every entry of a protected scratchpad has a
  parity bit in a 1-bit memory beside it, written with the entry; every read checks it and a
  mismatch stops the accelerator with ``ErrorCode.PARITY``. One bit per entry detects any odd
  number of flipped bits in that entry.
* Residue-checked accumulators (``AccelConfig.acc_check = "residue"``): each systolic PE
  carries the mod-3 residue of its accumulator, computed from the residues of its operands
  (independent of the multiplier and adder it checks); the drain compares the residue of
  every result leaving the array and stops with ``ErrorCode.RESIDUE`` on a mismatch. With
  int8 operands and k < 2**16 an accumulator never wraps, so the check is exact; any
  single-bit error (a change by 2**i, never a multiple of 3) is detected.
"""

from amaranth import Signal, Cat, Const
from amaranth.lib.memory import Memory

__all__ = ["ParityMemory", "mod3", "SCRATCHPADS"]

#: Scratchpads that can carry parity (``AccelConfig.parity`` entries).
SCRATCHPADS = ("act", "wgt", "acc", "scale")


class ParityMemory:
    """A ``Memory`` with (optionally) a parity bit per entry.

    Create ports through this object (``read_port``/``write_port``) instead of the memory;
    ``error`` is high in the cycle after a read whose parity does not match.
    """

    def __init__(self, m, mem: Memory, name: str, enabled: bool):
        self.m, self.mem, self.enabled = m, mem, enabled
        m.submodules[name] = mem
        self._checks = []
        self.error = Signal(name=f"{name}_perr")
        if enabled:
            self.par = Memory(shape=1, depth=mem.depth, init=[])
            m.submodules[f"{name}_par"] = self.par

    def read_port(self):
        rp = self.mem.read_port()
        if self.enabled:
            pp = self.par.read_port()
            checked = Signal(name="par_chk")
            self.m.d.comb += [pp.addr.eq(rp.addr), pp.en.eq(rp.en)]
            self.m.d.sync += checked.eq(rp.en)
            self._checks.append(checked & (rp.data.xor() != pp.data))
        return rp

    def write_port(self):
        wp = self.mem.write_port()
        if self.enabled:
            pw = self.par.write_port()
            self.m.d.comb += [pw.addr.eq(wp.addr), pw.en.eq(wp.en), pw.data.eq(wp.data.xor())]
        return wp

    def finish(self):
        self.m.d.comb += self.error.eq(Cat(*self._checks).any() if self._checks else 0)
        return self.error


def mod3(m, value, name):
    """The residue mod 3 (0..2) of a signed two's-complement ``value``, as a 2-bit signal.

    Bit i weighs 2**i = 1 or 2 (mod 3) for even or odd i; the sign bit weighs -2**(w-1).
    """
    w = len(value)
    weights = [pow(2, i, 3) for i in range(w - 1)] + [(-pow(2, w - 1, 3)) % 3]
    ones = [value[i] for i in range(w) if weights[i] == 1]
    twos = [value[i] for i in range(w) if weights[i] == 2]
    total = Signal(range(len(ones) + 2 * len(twos) + 1), name=f"{name}_sum")
    m.d.comb += total.eq(sum(ones, Const(0, 1)) + 2 * sum(twos, Const(0, 1)))
    out = Signal(2, name=name)
    m.d.comb += out.eq(total % 3)
    return out

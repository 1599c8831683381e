"""A cocotb memory model for the llmaccel bus: in-order responses after a latency drawn from
[min_latency, max_latency], with seeded random stalls on req.ready and gaps on resp.valid
(``stall`` = 0 gives a plain fixed-latency memory, as the throughput benchmark uses)."""

import random
from collections import deque

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["BusMemory"]


class BusMemory:
    def __init__(self, dut, prefix, data: bytearray, bus_bytes, seed=0, *, stall=0.3,
                 min_latency=0, max_latency=6):
        self.dut, self.p, self.mem, self.bb = dut, prefix, data, bus_bytes
        self.rnd = random.Random(seed)
        self.stall, self.min_latency, self.max_latency = stall, min_latency, max_latency
        self.pending = deque()
        self.requests = 0

    def sig(self, name):
        return getattr(self.dut, f"{self.p}__{name}")

    async def run(self):
        bb = self.bb
        cycle = 0
        while True:
            ready = self.rnd.random() >= self.stall
            self.sig("req__ready").value = int(ready)
            show = bool(self.pending) and self.pending[0][0] <= cycle and \
                self.rnd.random() >= self.stall
            if show:
                _, data, tag = self.pending[0]
                self.sig("resp__payload").value = int.from_bytes(data, "little") | (tag << (8 * bb))
            self.sig("resp__valid").value = int(show)
            await ReadOnly()
            req = ready and bool(self.sig("req__valid").value)
            resp = show and bool(self.sig("resp__ready").value)
            if req:
                p = int(self.sig("req__payload").value)
                addr, we, tag = p & 0xFFFFFFFF, (p >> 32) & 1, (p >> (33 + 8 * bb)) & 3
                data = bytes(bb)
                if addr + bb <= len(self.mem):
                    if we:
                        wd = (p >> 33) & ((1 << (8 * bb)) - 1)
                        self.mem[addr:addr + bb] = wd.to_bytes(bb, "little")
                    else:
                        data = bytes(self.mem[addr:addr + bb])
                self.requests += 1
            await RisingEdge(self.dut.clk)
            cycle += 1
            if resp:
                self.pending.popleft()
            if req:
                self.pending.append((cycle + self.rnd.randint(self.min_latency, self.max_latency), data, tag))

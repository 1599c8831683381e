"""The waveforms of one fault of a campaign: the golden run and the faulty run of its kernel
over the same window of cycles, and the first cycle at which they differ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .models import Fault, inject

__all__ = ["fault_waves", "FaultWaves"]


@dataclass
class FaultWaves:
    golden: Path
    faulty: Path
    window: tuple
    first_cycle: int | None         # the first cycle whose values differ (None: none do)
    signals: list                   # the signals that differ first


#: The default window: cycles before the fault and after it.
BEFORE, AFTER = 16, 256


def fault_window(f: Fault, start=None, cycles=None):
    """``(start, stop)`` cycles for fault ``f``: from ``start`` (default ``BEFORE`` cycles
    before the fault) for ``cycles`` (default ``BEFORE + AFTER``); with neither, from
    ``BEFORE`` before the fault to ``AFTER`` after it."""
    if start is None and cycles is None:
        return (max(0, f.cycle - BEFORE), f.cycle + AFTER)
    start = max(0, f.cycle - BEFORE) if start is None else start
    return (start, start + (cycles or BEFORE + AFTER))


def fault_waves(config, workload, f: Fault, out_dir, *, fmt="vcd", window=None,
                quiet=True) -> FaultWaves:
    """Write ``golden.FMT`` and ``faulty.FMT`` in ``out_dir`` for fault ``f`` (cycles of
    ``window``, default ``fault_window(f)``)."""
    from sim.fast import FastRunner
    from sim.waves import first_difference, read_waves
    from .sites import fault_sites
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if window is None:
        window = fault_window(f)
    k = workload.kernels[f.kernel]
    paths = {name: out_dir / f"{name}.{fmt}" for name in ("golden", "faulty")}
    runner = FastRunner(config, waves=paths["golden"], window=window, quiet=quiet)
    elements = {e.name: e for s in fault_sites(runner).values() for e in s.elements}
    if f.element not in elements:
        raise ValueError(f"the fault's element {f.element} is not in this design")
    runner.start(runner.load(k.program, k.memory), k.pos)
    start = runner.snapshot()       # the faulty run starts from the very same state
    for name in ("golden", "faulty"):
        if name == "faulty":
            runner.restore(start)
            runner.open_waves(paths[name])
            if f.cycle > runner.cycle:
                runner.step(f.cycle - runner.cycle)
            inject(runner, elements[f.element], f)
        if window[1] > runner.cycle:
            runner.step(window[1] - runner.cycle)
        runner.release_all()
        runner.close_waves()
    period = runner.period_ps
    t, names = first_difference(read_waves(paths["golden"]), read_waves(paths["faulty"]))
    return FaultWaves(paths["golden"], paths["faulty"], window,
                      None if t is None else t // period, names)

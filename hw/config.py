"""The one accelerator configuration, shared by hardware, golden model and compiler."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .isa import Engine
from .timing import KNOBS, Pipelining

__all__ = ["AccelConfig", "ConfigError", "CONFIG_DIR", "ENGINES", "LUT_WBITS", "LUT_GROUP",
           "ACC_CHECKS", "BITSERIAL_DTYPES", "DMA_RANGE_CHECKS", "REQUANT_MULT_BITS", "load_config",
           "preset_names"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

#: Engines a configuration can build: the ISA's engine tags, by name (hw/engines).
ENGINES = tuple(e.name.lower() for e in Engine)

#: Weight widths the LUT engine can run (ternary runs as 2-bit planes).
LUT_WBITS = (1, 2, 3, 4)
#: Accumulator protections (AccelConfig.acc_check).
ACC_CHECKS = ("none", "residue")
#: Multiplier bits the requant unit may consume per cycle (AccelConfig.requant_mult_bits).
REQUANT_MULT_BITS = (1, 2, 4, 8, 16)
#: How the DMA units compute a transfer's span for the DRAM range check.
DMA_RANGE_CHECKS = ("parallel", "serial")
#: How the accumulator and activation scratchpads give their readers ports.
SCRATCHPAD_PORTS = ("separate", "shared")
#: How the systolic array gives out its results (AccelConfig.systolic_drain).
SYSTOLIC_DRAINS = ("overlap", "direct")
#: Where the event counters are kept (AccelConfig.counter_store).
COUNTER_STORES = ("registers", "bram")

#: Data types the bit-serial engine can decode (hw.isa.BitSerialType, docs/bitserial.md).
BITSERIAL_DTYPES = ("int", "int8", "fp", "fpx")

#: Activations per LUT table group (the table has 2**G / 2 stored entries).
LUT_GROUP = 4


#: Fields with a fixed set of values: (allowed, default). At its default a field stays out of
#: the config hash (programs built before the option existed keep their hash).
_CHOICES = {
    "acc_check": (ACC_CHECKS, "none"),
    "requant_mult_bits": (REQUANT_MULT_BITS, 16),
    "dma_range_check": (DMA_RANGE_CHECKS, "parallel"),
    "scratchpad_ports": (SCRATCHPAD_PORTS, "separate"),
    "systolic_drain": (SYSTOLIC_DRAINS, "overlap"),
    "counter_store": (COUNTER_STORES, "registers"),
}


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def span_bits(n):
    """Bits that hold every value 0..n (an address range's end, or a count up to n)."""
    return max(1, int(n).bit_length())


def _pow2(x):
    return x > 0 and (x & (x - 1)) == 0


# field name -> (low, high, must be a power of two, meaning)
_RANGES = {
    "rows":                (1, 64, False, "systolic array rows"),
    "cols":                (1, 64, False, "systolic array columns"),
    "bus_bytes":           (4, 16, True, "memory bus width in bytes"),
    "act_depth":           (16, 65536, False, "activation scratchpad entries"),
    "wgt_depth":           (16, 65536, False, "weight scratchpad entries"),
    "acc_depth":           (1, 65536, False, "accumulator scratchpad entries"),
    "scale_depth":         (1, 65536, False, "scale scratchpad entries"),
    "queue_depth":         (0, 64, False, "instruction queue depth"),
    "dram_bytes":          (4096, 1 << 32, False, "external memory size in bytes"),
    "mem_bytes_per_cycle": (1, 16, False, "memory model bandwidth in bytes per cycle"),
    "mem_latency":         (1, 1000, False, "memory model latency in cycles"),
    "clock_mhz":           (1, 1000, False, "target clock in MHz"),
    "counter_bits":        (32, 64, False, "width of the hardware event counters"),
    "pnr_seed":            (0, (1 << 31) - 1, False, "nextpnr placement seed (0: its own)"),
    "bitserial_group":     (4, 4096, True, "features per group of the bit-serial engine"),
}


@dataclass(frozen=True)
class AccelConfig:
    """Accelerator configuration (frozen). Derived values are properties.

    Parameters
    ----------
    rows, cols : int
        Output-stationary systolic array shape; ``rows`` tokens x ``cols`` output channels.
    bus_bytes : int
        Width of the external memory bus (one beat), a power of two in [4, 16].
    act_depth, wgt_depth, acc_depth, scale_depth : int
        Scratchpad depths in entries. An activation entry holds ``rows`` int8 (one
        feature of ``rows`` tokens), a weight entry ``cols`` int8 (one input feature of
        ``cols`` output channels), an accumulator entry ``rows`` int32 (one output
        channel of ``rows`` tokens), a scale entry ``bus_bytes // 2`` int16 multipliers.
    queue_depth : int
        Entries in each of the load, compute and store instruction queues (waiting behind the
        unit's executing slot). 0: no queues, an instruction goes from the fetch buffer
        straight into its unit's slot, and waits there (holding up the instructions behind
        it) while the unit is busy; the golden model counts the same capacity.
    dram_bytes : int
        External memory size; every DMA and fetch address is checked against it.
    mem_bytes_per_cycle, mem_latency : int
        Default external-memory model used by the simulators.
    clock_mhz : int
        Target clock, used for reports and board builds.
    sfu : bool
        Build the special-function unit (docs/sfu.md): norms, softmax, tables (SiLU, GELU),
        RoPE, element-wise ops and transposes in the compute queue. Needs separate
        scratchpad ports.
    engines : list of str
        MATMUL engines built: ``systolic`` (int8 x int8), ``lut`` (low-bit weights by
        table lookup; its tile is ``rows x 2*cols x 4``, see docs/lut.md) and
        ``bitserial`` (4-bit codes of several data types, term by term: ``rows x cols/2``
        processing elements with a dot product of 4, see docs/bitserial.md).
    lut_wbits : list of int
        Weight widths (bit planes) the LUT engine accepts; a MATMUL asking for another width
        raises ILLEGAL_FIELD.
    bitserial_dtypes : list of str
        Data types the bit-serial engine decodes (``int``: INT3/INT4 codes, ``int8``,
        ``fp``: FP3/FP4 codes, ``fpx``: FP4 with a per-group extra value, BitMoD's
        mixture); a MATMUL asking for another raises ILLEGAL_FIELD (docs/bitserial.md).
    bitserial_group : int
        Features per ``fpx`` group: a selector entry leads each group's codes, and an
        ``fpx`` MATMUL covers at most one group (a power of two, default 128).
    parity : list of str
        Scratchpads (from ``act``, ``wgt``, ``acc``, ``scale``) with a parity bit per entry,
        checked on every read (error PARITY). See hw/protect.py.
    requant_lanes : int
        Lanes the requant unit computes in parallel; an accumulator entry (``rows`` values)
        takes ``rows / requant_lanes`` beats. 0 (the default) means ``rows``: one entry per
        cycle. Fewer lanes save multipliers and logic on small FPGAs.
    requant_mult_bits : int
        Bits of the 16-bit scale multiplier the requant unit consumes per cycle: 16 (the
        default; one ``32 x 16`` multiplier per lane) or 8, 4, 2, 1 (``16 / bits`` cycles per
        product, ``32 x bits`` partial products in fabric: for FPGAs without DSPs to spare).
    counter_bits : int
        Width of the twelve event counters in hardware (32..64, default 64); they read as
        64-bit values and wrap at ``2**counter_bits``. Narrow counters save logic on small
        FPGAs; the board host extends them to 64 bits while it polls (boards/host.py).
    dma_range_check : str
        ``parallel`` (a 16 x 32 multiplier per DMA unit, one cycle) or ``serial`` (shift and
        add, one bit of ``rows - 1`` per cycle: a LOAD or STORE of ``rows`` entries waits
        ``bit_length(rows - 1)`` extra cycles before it starts, and needs no multiplier).
    scratchpad_ports : str
        ``separate`` (the default: every reader of the accumulator and activation
        scratchpads has its own read port, which FPGA tools build as one more copy of the
        memory) or ``shared``: one read port per scratchpad. The drain's read-modify-write
        comes first, then the compute unit, then the store DMA, which waits for a free
        cycle; a REQUANT reads one entry per two cycles at most. Saves block RAMs (on an
        iCE40 an accumulator copy of a 4-row array is eight of them).
    systolic_drain : str
        ``overlap`` (the default: finished results move to result registers and drain while
        the next MATMUL runs) or ``direct``: no result registers (``rows * cols`` of
        ``systolic_acc_bits`` flip-flops fewer); columns drain straight from the
        accumulators, and a MATMUL's first step waits until the previous one's drain has
        started (``(rows - 1) // systolic_tile_rows + 2`` cycles after its last step at the
        earliest).
    systolic_tile_rows : int
        Rows of the systolic array per tile, a divisor of ``rows`` (Gemmini's tileRows;
        default 1, every PE registered). Within a tile the weights pass down with no
        pipeline register, so the tile's rows work in the same cycle: no weight registers
        and no activation skew inside it, at the cost of a weight fanning out to
        ``systolic_tile_rows`` multipliers in one cycle. Results leave no later.
    counter_store : str
        ``registers`` (the default: one adder and register per counter) or ``bram``: the
        counters' totals in a block RAM, which one adder updates round-robin from a small
        pending count per counter (docs/architecture.md, "Counters"). A read then takes a
        clock cycle (``csr_data`` is valid the cycle after ``csr_addr``), lags a running
        program by at most a round's events, and is exact once ``done`` is up: ``done``
        waits for the last round. Saved 310 iCE40 logic cells on the `ice40` preset.
    acc_check : str
        ``none`` or ``residue``: the systolic accumulators carry a mod-3 residue checked as
        results leave the array (error RESIDUE).
    timing : dict
        Overrides of the pipelining knobs (hw/timing.py, ``Pipelining``): knob name ->
        true or false, from a ``[timing]`` table. Every knob not named follows
        ``clock_mhz``; ``pipelining`` is the result. Not part of the hash: no knob changes
        what a program computes.
    pnr_seed : int
        nextpnr's placement seed for this config's board builds (0: nextpnr's own; the
        ``--seed`` of ``llmaccel bitstream`` overrides it). Not part of the hardware (left
        out of the hash): a preset near the edge of routability names a seed it routes with.
    """

    name: str = "custom"
    rows: int = 16
    cols: int = 16
    bus_bytes: int = 16
    act_depth: int = 16384
    wgt_depth: int = 2048
    acc_depth: int = 512
    scale_depth: int = 2048
    queue_depth: int = 8
    dram_bytes: int = 1 << 26
    mem_bytes_per_cycle: int = 16
    mem_latency: int = 20
    clock_mhz: int = 150
    engines: tuple = field(default=("systolic",))
    lut_wbits: tuple = field(default=LUT_WBITS)
    bitserial_dtypes: tuple = field(default=BITSERIAL_DTYPES)
    bitserial_group: int = 128
    parity: tuple = field(default=())
    acc_check: str = "none"
    requant_lanes: int = 0
    requant_mult_bits: int = 16
    counter_bits: int = 64
    dma_range_check: str = "parallel"
    scratchpad_ports: str = "separate"
    systolic_drain: str = "overlap"
    counter_store: str = "registers"
    systolic_tile_rows: int = 1
    sfu: bool = False
    timing: tuple = field(default=())
    pnr_seed: int = 0

    def __post_init__(self):
        where = f"config {self.name!r}"
        for fname, (lo, hi, pow2, meaning) in _RANGES.items():
            v = getattr(self, fname)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(
                    f"{where}: {fname} ({meaning}) must be an integer in [{lo}, {hi}], not {v!r}")
            if pow2 and not _pow2(v):
                raise ConfigError(
                    f"{where}: {fname} ({meaning}) must be a power of two, not {v!r}")
        for fname, entry in (("rows", self.rows), ("cols", self.cols)):
            if entry % self.bus_bytes:
                raise ConfigError(
                    f"{where}: {fname} must be a multiple of bus_bytes ({self.bus_bytes}), "
                    f"not {entry!r}, so that a scratchpad entry is whole bus beats")
        if self.mem_bytes_per_cycle > self.bus_bytes:
            raise ConfigError(
                f"{where}: mem_bytes_per_cycle must be in [1, bus_bytes={self.bus_bytes}], "
                f"not {self.mem_bytes_per_cycle!r}")
        if self.dram_bytes % self.bus_bytes:
            raise ConfigError(f"{where}: dram_bytes must be a multiple of bus_bytes")
        engines = tuple(self.engines)
        if not engines or any(e not in ENGINES for e in engines):
            raise ConfigError(
                f"{where}: engines must be a non-empty list from {list(ENGINES)}, "
                f"not {list(engines)!r}")
        object.__setattr__(self, "engines", engines)
        raw = self.lut_wbits
        if not (isinstance(raw, (list, tuple)) and raw
                and all(type(b) is int and b in LUT_WBITS for b in raw)):
            raise ConfigError(
                f"{where}: lut_wbits must be a non-empty list from {list(LUT_WBITS)}, "
                f"not {list(self.lut_wbits)!r}")
        object.__setattr__(self, "lut_wbits", tuple(sorted(set(raw))))
        raw = self.bitserial_dtypes
        if not (isinstance(raw, (list, tuple)) and raw and all(t in BITSERIAL_DTYPES
                                                               for t in raw)):
            raise ConfigError(
                f"{where}: bitserial_dtypes must be a non-empty list from "
                f"{list(BITSERIAL_DTYPES)}, not {raw!r}")
        object.__setattr__(self, "bitserial_dtypes",
                           tuple(t for t in BITSERIAL_DTYPES if t in raw))

        from .protect import SCRATCHPADS
        raw = self.parity
        if not (isinstance(raw, (list, tuple)) and all(p in SCRATCHPADS for p in raw)):
            raise ConfigError(f"{where}: parity must be a list from {list(SCRATCHPADS)}, "
                              f"not {raw!r}")
        object.__setattr__(self, "parity", tuple(p for p in SCRATCHPADS if p in raw))
        rl = self.requant_lanes
        if isinstance(rl, bool) or not isinstance(rl, int) or not (
                rl == 0 or (1 <= rl <= self.rows and self.rows % rl == 0)):
            raise ConfigError(f"{where}: requant_lanes must be 0 (one per row) or a divisor of "
                              f"rows ({self.rows}), not {rl!r}")
        tr = self.systolic_tile_rows
        if isinstance(tr, bool) or not isinstance(tr, int) or not (
                tr >= 1 and self.rows % tr == 0):
            raise ConfigError(f"{where}: systolic_tile_rows must be a divisor of rows "
                              f"({self.rows}), not {tr!r}")
        for fname, (allowed, _) in _CHOICES.items():
            v = getattr(self, fname)
            if isinstance(v, bool) or v not in allowed:
                raise ConfigError(f"{where}: {fname} must be one of {list(allowed)}, not {v!r}")
        raw = self.timing
        pairs = raw.items() if isinstance(raw, dict) else raw
        try:
            pairs = tuple(sorted((str(k), v) for k, v in pairs))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: timing must be a table of knob = true/false, "
                              f"not {raw!r}") from None
        for k, v in pairs:
            if k not in KNOBS:
                raise ConfigError(f"{where}: timing has no knob {k!r}; knobs are "
                                  f"{', '.join(KNOBS)}")
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: timing.{k} must be true or false, not {v!r}")
        object.__setattr__(self, "timing", pairs)
        if not isinstance(self.sfu, bool):
            raise ConfigError(f"{where}: sfu must be true or false, not {self.sfu!r}")
        if self.sfu and self.rows & (self.rows - 1):
            raise ConfigError(f"{where}: sfu = true needs rows to be a power of two (its "
                              f"function table is 256 / rows entries), not {self.rows}")
        if self.sfu and self.scratchpad_ports == "shared":
            raise ConfigError(f"{where}: sfu = true needs scratchpad_ports = \"separate\"")
        if self.act_depth % LUT_GROUP:
            raise ConfigError(f"{where}: act_depth must be a multiple of {LUT_GROUP} "
                              f"(the activation scratchpad has {LUT_GROUP} banks), "
                              f"not {self.act_depth!r}")

    # --- derived values, computed in one place -------------------------------------------
    @property
    def act_entry_bytes(self):
        return self.rows

    @property
    def wgt_entry_bytes(self):
        return self.cols

    @property
    def acc_entry_bytes(self):
        return 4 * self.rows

    @property
    def scale_entry_bytes(self):
        return self.bus_bytes

    @property
    def scale_lanes(self):
        """int16 multipliers per scale-scratchpad entry."""
        return self.bus_bytes // 2

    @property
    def peak_macs_per_cycle(self):
        """Systolic engine: int8 MACs per cycle."""
        return self.rows * self.cols

    @property
    def systolic_acc_bits(self):
        """Bits of the systolic array's accumulators: a MATMUL has at most
        ``min(act_depth, wgt_depth)`` steps of int8 x int8 products (each at most 2**14 in
        magnitude), so this many signed bits hold every sum exactly (32 at most: beyond, the
        int32 sum wraps as the ISA says)."""
        k = min(self.act_depth, self.wgt_depth)
        return min(32, (k << 14).bit_length() + 1)

    @property
    def has_lut(self):
        return "lut" in self.engines

    @property
    def lut_cols(self):
        """Output channels of the LUT tile: one weight entry holds a 4-bit index for each."""
        return 2 * self.cols

    def lut_peak_macs_per_cycle(self, wbits):
        """LUT engine: weight-MACs per cycle at ``wbits`` (one bit plane per cycle)."""
        return self.rows * self.lut_cols * LUT_GROUP / wbits

    @property
    def pipelining(self) -> Pipelining:
        """The pipelining knobs: derived from ``clock_mhz``, with ``timing``'s overrides."""
        return Pipelining.derive(self.clock_mhz, self.timing)

    @property
    def bitserial_cols(self):
        """Output channels of the bit-serial engine: a weight entry holds 4 codes for each."""
        return self.cols // 2

    @property
    def group_scale(self):
        """Whether the accumulator writer has the per-group scaling stage (MATMUL.scaled)."""
        return self.has_lut or "bitserial" in self.engines

    @property
    def addr_bits(self):
        return max(1, (self.dram_bytes - 1).bit_length())

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["engines"] = list(self.engines)
        d["lut_wbits"] = list(self.lut_wbits)
        d["bitserial_dtypes"] = list(self.bitserial_dtypes)
        d["parity"] = list(self.parity)
        d["timing"] = dict(self.timing)
        return d

    @property
    def hash(self) -> bytes:
        """8-byte digest of everything that changes the hardware or program semantics.

        The memory model (bandwidth, latency) and the clock do not change what a program
        computes, so they are left out: one program runs under any memory model.
        """
        d = self.to_dict()
        for k in ("name", "mem_bytes_per_cycle", "mem_latency", "clock_mhz", "pnr_seed",
                  "timing"):
            d.pop(k)
        if not self.parity:         # unprotected configs keep the hash they always had
            d.pop("parity")
        if self.requant_lanes in (0, self.rows):    # the same hardware as before the option
            d.pop("requant_lanes")
        if self.counter_bits == 64:
            d.pop("counter_bits")
        if "bitserial" not in self.engines:     # configurations without the engine
            d.pop("bitserial_dtypes")
            d.pop("bitserial_group")
        if self.systolic_tile_rows == 1:
            d.pop("systolic_tile_rows")
        if not self.sfu:
            d.pop("sfu")
        for fname, (_, default) in _CHOICES.items():
            if d[fname] == default:
                d.pop(fname)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()[:8]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def preset_names():
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_config(name_or_path) -> AccelConfig:
    """Load a preset by name (``configs/NAME.toml``) or a TOML file by path."""
    if isinstance(name_or_path, AccelConfig):
        return name_or_path
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith(".toml") or path.exists()):
        path = CONFIG_DIR / f"{s}.toml"
        if not path.exists():
            raise ConfigError(
                f"unknown configuration {s!r}; presets are {', '.join(preset_names())}, "
                f"or give a path to a .toml file")
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {s} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    known = {f.name for f in dataclasses.fields(AccelConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field {unknown[0]!r}; known fields are "
                          f"{', '.join(sorted(known - {'name'}))}")
    raw.setdefault("name", path.stem)
    try:
        return AccelConfig(**raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None

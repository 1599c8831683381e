"""The instruction set, defined once.

Every instruction is one 128-bit word. The formats are amaranth ``data.Struct`` layouts; the
hardware decodes a word by viewing it through them, and the Python codec below (used by the
compiler and the golden model) reads its field offsets from the very same layouts.

Three decoupled queues (load, compute, store) run concurrently. Each instruction carries a
``wait`` and a ``release`` mask over the *other* queues: before it starts it takes one token
from the counter (P -> this queue) for every P in ``wait``; when it has completed it adds one
token to the counter (this queue -> P) for every P in ``release``. Naming the instruction's
own queue in either mask is illegal.
"""


from amaranth.hdl import Shape
from amaranth.lib import data, enum

__all__ = [
    "ISA_VERSION", "INSN_BITS", "INSN_BYTES", "Opcode", "Queue", "Engine", "Buffer",
    "Header", "DmaInsn", "MatmulInsn", "MatmulMode", "SystolicMode", "LutMode", "BitSerialMode",
    "BitSerialType", "MODE_BITS",
    "RequantInsn", "SfuInsn", "SfuFunc", "SOFTMAX_PASSES", "SOFTMAX_FUNCS",
    "SyncInsn", "EndInsn", "FORMATS", "QUEUE_OF", "ErrorCode", "Counter",
    "encode", "decode", "disasm", "IsaError", "view", "buffer_entry_bytes", "buffer_depth",
    "mode_layout", "mode_fields", "mode_value", "built_opcodes",
]

ISA_VERSION = 8
INSN_BITS = 128
INSN_BYTES = INSN_BITS // 8


class Opcode(enum.Enum, shape=4):
    """Opcode 0 and every value not listed are illegal (an all-zero word traps)."""
    LOAD = 1
    STORE = 2
    MATMUL = 3
    REQUANT = 4
    SYNC = 5
    SFU = 6
    END = 15


class Queue(enum.Enum, shape=2):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


class Engine(enum.Enum, shape=3):
    """MATMUL datapath. Each new engine adds a tag here and a member of ``MatmulMode``, not a
    new instruction; its rules (channels, steps, legality) live in hw/engines."""
    SYSTOLIC = 0    # int8 x int8 output-stationary array
    LUT = 1         # low-bit weight planes x int8 by table lookup (LUT tensor core)
    BITSERIAL = 2   # 4-bit codes of several data types x int8, term by term (BitMoD)


class Buffer(enum.Enum, shape=2):
    """Scratchpads a DMA instruction can name (LOAD: ACT, WGT, SCALE; STORE: ACT, ACC)."""
    ACT = 0
    WGT = 1
    ACC = 2
    SCALE = 3


def buffer_entry_bytes(cfg):
    """Bytes per scratchpad entry of each buffer in configuration ``cfg``."""
    return {Buffer.ACT: cfg.act_entry_bytes, Buffer.WGT: cfg.wgt_entry_bytes,
            Buffer.ACC: cfg.acc_entry_bytes, Buffer.SCALE: cfg.scale_entry_bytes}


def buffer_depth(cfg):
    """Entries of each buffer in configuration ``cfg``."""
    return {Buffer.ACT: cfg.act_depth, Buffer.WGT: cfg.wgt_depth,
            Buffer.ACC: cfg.acc_depth, Buffer.SCALE: cfg.scale_depth}


class Header(data.Struct):
    opcode: Opcode
    wait: 3         # bit q = take a token from queue q
    release: 3      # bit q = give a token to queue q


class DmaInsn(data.Struct):
    """LOAD / STORE: ``rows`` scratchpad entries <-> external memory rows.

    Entry ``sp_addr + r`` <-> bytes ``[dram_addr + r*stride, + entry_bytes(buf))``.
    ``dram_addr`` and ``stride`` must be multiples of the bus width.

    ``pos_mult`` (configurations with the SFU): dispatch adds ``block(pos) * pos_mult`` to
    ``dram_addr`` (modulo 2**32), ``pos`` being the run's position (hw.position): one
    program reaches the KV-cache block or the table row of whatever position the host gives.
    """
    opcode: Opcode
    wait: 3
    release: 3
    buf: Buffer
    sp_addr: 16
    rows: 16
    dram_addr: 32
    stride: 32
    pos_mult: 16


#: Bits of a MATMUL's engine-specific mode (the widest engine's options fit).
MODE_BITS = 8


#: SYSTOLIC: no options; every mode bit must be 0.
SystolicMode = data.StructLayout({})


class LutMode(data.Struct):
    """LUT: the weights' bit planes and grid."""
    wbits: 3        # 1..4 planes (the configuration's lut_wbits)
    odd: 1          # 1: the symmetric odd grid {+-1, +-3, ...}; 0: two's complement


class BitSerialType(enum.Enum, shape=2):
    """BITSERIAL: what a weight entry's 4-bit codes are (docs/bitserial.md)."""
    INT = 0     # two's complement [-8, 7] (INT3, INT4): two radix-4 Booth terms
    INT8 = 1    # int8 as two planes of nibbles, low first: four terms
    FP = 2      # sign and magnitude on the grid {0, 1, 2, 3, 4, 6, 8, 12} (FP3, FP4 E2M1)
    FPX = 3     # FP with the negative zero as each channel's extra value (+-10 or +-16),
    #             named by a selector entry before the codes (BitMoD's FP4 variants)


class BitSerialMode(data.Struct):
    """BITSERIAL: the codes' data type."""
    dtype: BitSerialType


class MatmulMode(data.Union):
    """A MATMUL's engine-specific options: the member named after its engine. Bits beyond
    that member's must be 0 (ILLEGAL_FIELD). ``raw`` views all of them."""
    raw: MODE_BITS
    systolic: SystolicMode
    lut: LutMode
    bitserial: BitSerialMode


def mode_layout(engine):
    """The ``MatmulMode`` member (a struct layout) of ``engine``."""
    return data.Layout.cast(MatmulMode)[Engine(engine).name.lower()].shape


def mode_fields(engine, raw):
    """The named fields of ``engine``'s mode in the ``raw`` mode bits, or None when ``raw``
    sets a bit the mode does not have (an illegal MATMUL)."""
    layout = data.Layout.cast(mode_layout(engine))
    if raw >> layout.size:
        return None
    return {name: (raw >> f.offset) & ((1 << Shape.cast(f.shape).width) - 1)
            for name, f in layout}


def mode_value(engine, **fields):
    """The raw mode bits of ``engine``'s mode with ``fields`` (unnamed ones 0)."""
    layout = data.Layout.cast(mode_layout(engine))
    raw = 0
    for name, f in layout:
        v = int(fields.pop(name, 0))
        width = Shape.cast(f.shape).width
        if not 0 <= v < (1 << width):
            raise IsaError(f"MATMUL mode {Engine(engine).name.lower()}.{name} = {v} does not "
                           f"fit in {width} bits")
        raw |= v << f.offset
    if fields:
        raise IsaError(f"the {Engine(engine).name.lower()} engine's MATMUL mode has no field "
                       f"{sorted(fields)[0]!r}")
    return raw


class MatmulInsn(data.Struct):
    """acc[acc_addr + j][i] (+)= g(sum_k act[act_addr + k][i] * w[k][j]).

    i over ``rows`` tokens, j over the engine's output channels, k over ``k`` (>= 1) input
    features; the sum is int32 (wrapping); ``accumulate`` adds the old value.

    ``mode`` holds the engine's options (``MatmulMode``; docs/engines.md).

    SYSTOLIC: ``cols`` channels, ``w[k][j]`` = int8 ``wgt[wgt_addr + k][j]``; the mode is 0.

    LUT: ``2 * cols`` channels; ``k`` and ``act_addr`` multiples of 4; weights of
    ``mode.lut.wbits`` (1..4) bits stored as bit planes: entry ``wgt_addr + g * wbits + p``
    holds plane ``p`` of features ``4g .. 4g + 3``, a 4-bit (inverted) table index per
    channel (docs/lut.md). The integer weight is ``u - 2**(wbits-1)`` (``mode.lut.odd`` = 0)
    or ``2*u - (2**wbits - 1)`` (``odd`` = 1, the symmetric odd grid), ``u`` the unsigned
    value of the planes.

    ``scaled`` (configs with the LUT engine): g(x) = rne(x * m[scale_addr + j], shift),
    wrapped to int32, with ``m`` as in REQUANT -- a per-group weight scale; else g(x) = x.
    """
    opcode: Opcode
    wait: 3
    release: 3
    engine: Engine
    accumulate: 1
    act_addr: 16
    wgt_addr: 16
    acc_addr: 16
    k: 16
    mode: MatmulMode
    scaled: 1
    shift: 6
    scale_addr: 16


class RequantInsn(data.Struct):
    """act[out_addr + n] = clamp(rne(acc[acc_addr + n] * m[scale_addr + n], shift)
    (+ act[res_addr + n] if residual), lo, 127) for n < count; lo = 0 with relu, else -128.

    ``m[s]`` is int16 lane ``s % lanes`` of scale entry ``s // lanes``; ``rne(x, s)`` is
    ``x / 2**s`` rounded half to even. Output and residual ranges must be identical or
    disjoint.
    """
    opcode: Opcode
    wait: 3
    release: 3
    residual: 1
    relu: 1
    shift: 6
    acc_addr: 16
    out_addr: 16
    res_addr: 16
    scale_addr: 16
    count: 16


class SfuFunc(enum.Enum, shape=4):
    """The special-function unit's operations (docs/sfu.md gives each one's arithmetic).
    0 and values not listed are illegal."""
    RMSNORM = 1     # act[src..] over the entries of each lane, gamma from the scales
    LAYERNORM = 2   # the same with the mean taken out
    SOFTMAX = 3     # acc[src..] (int32 scores) over the entries of each lane, causal mask
    TABLE = 4       # act[src .. src + 256/rows) -> the 256-entry int8 function table
    LOOKUP = 5      # table[x + 128] (SiLU, GELU, ReLU^2, ... as a table)
    MUL = 6         # a * b * imm0, rounded and clamped
    ADD = 7         # a * imm0 + b * imm1, rounded and clamped
    ROPE = 8        # rotate halves by the cos/sin entries at src2
    MERGE = 9       # lanes imm0 <= lane < imm1 from a, the others from b
    TRANSPOSE = 10  # each block of rows x rows int8 transposed
    SOFTMAX_MAX = 11    # SOFTMAX's passes one at a time, for a row longer than the
    SOFTMAX_SUM = 12    # accumulators: each lane's running maximum, then its sum of
    SOFTMAX_OUT = 13    # exponentials, then the probabilities, chunk by chunk
    BROADCAST = 14  # lane imm0 (mod rows) of a into every lane


#: SOFTMAX's passes as instructions of their own, in the order a chunked row runs them.
SOFTMAX_PASSES = (SfuFunc.SOFTMAX_MAX, SfuFunc.SOFTMAX_SUM, SfuFunc.SOFTMAX_OUT)
#: The functions that read scores from the accumulators, with ``imm1`` the first query
#: position of the causal mask.
SOFTMAX_FUNCS = (SfuFunc.SOFTMAX, *SOFTMAX_PASSES)


class SfuInsn(data.Struct):
    """A special-function op over ``count`` entries, all ``rows`` lanes in parallel.

    Operands: ``a`` = act[src + n] (SOFTMAX: acc[src + n]), ``b`` = act[src2 + n] (MUL, ADD,
    MERGE; ROPE's cos/sin), ``m[src2 + n]`` the scale multipliers (RMSNORM, LAYERNORM's
    gamma); results go to act[dst + n]. ``imm0``/``imm1`` are 16-bit immediates whose meaning
    depends on ``func`` (docs/sfu.md); ``causal`` masks a softmax's entry ``n`` in lane ``l``
    unless ``n <= imm1 + l`` (``imm1`` signed; with ``rel``, unless ``n <= imm1``: every lane
    is the current token, as a decode step's query heads are). The softmax passes keep each
    lane's maximum and sum in the unit between instructions: SOFTMAX and SOFTMAX_MAX with
    ``imm0 = 1`` start them afresh. The output range must equal or be disjoint from every
    input range in the activations (OVERLAP).

    ``rel``: dispatch adds the run's position (hw.position) to the immediates: SOFTMAX's
    ``imm1`` gets ``pos`` (the query position of every lane), MERGE's ``imm0`` and ``imm1``
    and BROADCAST's ``imm0`` get ``lane(pos)`` (the lane of the current token), modulo
    2**16; other functions ignore it (SOFTMAX_MAX, _SUM and _OUT are SOFTMAX here).
    """
    opcode: Opcode
    wait: 3
    release: 3
    func: SfuFunc
    causal: 1
    rel: 1
    shift: 6
    src: 16
    src2: 16
    dst: 16
    count: 16
    imm0: 16
    imm1: 16


class SyncInsn(data.Struct):
    """Executes in ``queue`` once all earlier work of that queue has completed."""
    opcode: Opcode
    wait: 3
    release: 3
    queue: Queue


class EndInsn(data.Struct):
    """Ends the program: fetch stops; the run is done when every queue has drained."""
    opcode: Opcode
    wait: 3
    release: 3


FORMATS = {
    Opcode.LOAD: DmaInsn, Opcode.STORE: DmaInsn, Opcode.MATMUL: MatmulInsn,
    Opcode.REQUANT: RequantInsn, Opcode.SFU: SfuInsn, Opcode.SYNC: SyncInsn,
    Opcode.END: EndInsn,
}

#: The queue each opcode executes in (SYNC names its queue; END is handled by fetch).
QUEUE_OF = {
    Opcode.LOAD: Queue.LOAD, Opcode.MATMUL: Queue.COMPUTE, Opcode.REQUANT: Queue.COMPUTE,
    Opcode.SFU: Queue.COMPUTE, Opcode.STORE: Queue.STORE,
}


def built_opcodes(cfg):
    """The opcodes configuration ``cfg`` executes; any other raises ILLEGAL_OPCODE (SFU
    without the special-function unit)."""
    return tuple(op for op in Opcode if op != Opcode.SFU or cfg.sfu)


class ErrorCode(enum.Enum, shape=4):
    """Why the accelerator stopped with its error flag raised."""
    NONE = 0
    ILLEGAL_OPCODE = 1
    ILLEGAL_FIELD = 2       # own queue in wait/release, unknown or absent engine/buffer/queue
                            # or SFU function, a count the SFU op cannot take,
                            # k == 0, a mode the engine does not take (hw/engines: for the
                            # LUT a k not a multiple of 4 or a weight width not enabled)
    SP_RANGE = 3            # scratchpad address out of range
    DRAM_RANGE = 4          # external address out of range
    MISALIGNED = 5          # DMA address or stride not a multiple of the bus width, or a
                            # MATMUL act_addr off its engine's alignment (LUT: 4)
    OVERLAP = 6             # REQUANT output and residual ranges (SFU: output and an
                            # input) partly overlap
    TOKEN_OVERFLOW = 7      # a dependency-token counter overflowed
    DEADLOCK = 8            # every queue waits for a token nobody can give
    FETCH_RANGE = 9         # the program runs off the end of memory without END
    PARITY = 10             # a scratchpad entry read back with bad parity (AccelConfig.parity)
    RESIDUE = 11            # an accumulator result disagrees with its mod-3 residue
                            # (AccelConfig.acc_check = "residue")


class Counter(enum.Enum, shape=4):
    """Host-readable 64-bit counters (CSR index)."""
    CYCLES = 0
    INSNS = 1
    LOAD_BUSY = 2
    COMPUTE_BUSY = 3
    ARRAY_BUSY = 4      # cycles a systolic MATMUL feeds the array (one k step per cycle)
    REQUANT_BUSY = 5
    STORE_BUSY = 6
    MACS = 7            # weight-MACs issued: k * rows * channels per MATMUL (both engines)
    BYTES_READ = 8      # DMA bytes read from external memory (not counting fetch)
    BYTES_WRITTEN = 9
    FETCH_BYTES = 10
    LUT_BUSY = 11       # cycles a LUT MATMUL step (one bit plane of one 4-feature group) enters
    SFU_BUSY = 12       # cycles an SFU instruction runs
    BITSERIAL_BUSY = 13  # bit-serial MATMUL steps entered (one weight entry, two terms each)


class IsaError(ValueError):
    """An instruction cannot be encoded or decoded."""


def view(fmt, word):
    """View the low bits of a 128-bit instruction Value through format ``fmt``."""
    return fmt(word[:data.Layout.cast(fmt).size])


def _fields(layout):
    out = []
    for name, f in data.Layout.cast(layout):
        shape = f.shape
        is_enum = isinstance(shape, type) and issubclass(shape, enum.Enum)
        out.append((name, f.offset, Shape.cast(shape).width, shape if is_enum else None))
    return out


_FIELDS = {op: _fields(fmt) for op, fmt in FORMATS.items()}
_OPCODE_WIDTH = Shape.cast(Opcode).width


def encode(opcode, **fields) -> int:
    """Encode one instruction to its 128-bit integer. Unnamed fields are 0; a MATMUL's
    ``mode`` is its raw bits or a dict of the engine's mode fields."""
    opcode = Opcode(opcode)
    word = 0
    given = dict(fields)
    given["opcode"] = opcode
    for name, offset, width, enum_cls in _FIELDS[opcode]:
        v = given.pop(name, 0)
        if name == "mode" and isinstance(v, dict):     # the engine's named options
            v = mode_value(fields.get("engine", Engine.SYSTOLIC), **v)
        if enum_cls is not None:
            v = enum_cls(v).value
        v = int(v)
        if not 0 <= v < (1 << width):
            raise IsaError(f"{opcode.name}.{name} = {v} does not fit in {width} bits")
        word |= v << offset
    if given:
        raise IsaError(f"{opcode.name} has no field {sorted(given)[0]!r}")
    return word


def decode(word: int) -> dict:
    """Decode a 128-bit word to a dict of its fields (``opcode`` included).

    Raises IsaError for an illegal opcode; enum-typed fields holding values the enum does not
    list decode to the raw integer (the hardware flags them when the instruction executes).
    """
    raw_op = word & ((1 << _OPCODE_WIDTH) - 1)
    try:
        opcode = Opcode(raw_op)
    except ValueError:
        raise IsaError(f"illegal opcode {raw_op}") from None
    out = {}
    for name, offset, width, enum_cls in _FIELDS[opcode]:
        v = (word >> offset) & ((1 << width) - 1)
        if enum_cls is not None:
            try:
                v = enum_cls(v)
            except ValueError:
                pass
        out[name] = v
    return out


def disasm(word: int) -> str:
    try:
        d = decode(word)
    except IsaError as e:
        return f"<{e}: {word:#034x}>"
    op = d.pop("opcode")
    parts = []
    for k, v in d.items():
        if k in ("wait", "release"):
            if v:
                parts.append(f"{k}=" + "|".join(q.name.lower() for q in Queue if v >> q.value & 1))
            continue
        if k == "mode" and isinstance(d.get("engine"), Engine):
            named = mode_fields(d["engine"], v)
            if named is not None:
                parts += [f"{f}={x}" for f, x in named.items()]
                continue
        parts.append(f"{k}={v.name.lower() if isinstance(v, enum.Enum) else v}")
    return f"{op.name.lower():8s}" + " ".join(parts)

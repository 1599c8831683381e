"""Signed 8 x 8 products for the systolic array: inferred multipliers, or two per iCE40
UltraPlus DSP block. And registered products (``registered_product``): on an ECP5 a
MULT18X18D with its own input and output registers.

An iCE40UP has 8 SB_MAC16 blocks (the UP5K); Yosys maps one multiplier to each, so a 4x4
array alone would need 16. In its 8x8 mode one SB_MAC16 computes two independent signed
8 x 8 products (``A[15:8] * B[15:8]`` on the top half of ``O``, ``A[7:0] * B[7:0]`` on the
bottom half), combinationally here (no internal registers). On any other platform, and in
simulation (``platform`` None), the products are plain multiplications for the tools to map.
The gate-level test simulates the SB_MAC16 path with Yosys' cell model.
"""

from amaranth import Cat, ClockSignal, Const, Instance, Signal, Value, signed

from .lib import is_ice40_ultraplus, registered, uses_ecp5_cells

__all__ = ["products", "registered_product", "MULT18X18D_REGISTERS"]

def products(m, platform, ops, name="mul"):
    """Drive each ``prod`` (signed(16)) of ``ops = [(a, b, prod), ...]`` with ``a * b``
    (``a``, ``b`` signed(8)); on an iCE40 UltraPlus two products per SB_MAC16."""
    if not is_ice40_ultraplus(platform):
        m.d.comb += [p.eq(a * b) for a, b, p in ops]
        return
    for n in range(0, len(ops), 2):
        pair = ops[n:n + 2]
        if len(pair) == 1:          # an odd one out shares nothing: the bottom half only
            pair = pair + [(pair[0][0], pair[0][1], Signal(signed(16), name=f"{name}{n}_nc"))]
        (a0, b0, p0), (a1, b1, p1) = pair
        o = Signal(32, name=f"{name}{n}_o")
        m.submodules[f"{name}{n}"] = Instance(
            "SB_MAC16",
            p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
            # no input, pipeline or output registers; both outputs straight from the
            # 8x8 multipliers (select 2: F on the top half, G on the bottom)
            p_A_REG=Const(0, 1), p_B_REG=Const(0, 1), p_C_REG=Const(0, 1), p_D_REG=Const(0, 1),
            p_TOP_8x8_MULT_REG=Const(0, 1), p_BOT_8x8_MULT_REG=Const(0, 1),
            p_PIPELINE_16x16_MULT_REG1=Const(0, 1), p_PIPELINE_16x16_MULT_REG2=Const(0, 1),
            p_TOPOUTPUT_SELECT=Const(2, 2), p_BOTOUTPUT_SELECT=Const(2, 2),
            p_TOPADDSUB_LOWERINPUT=Const(0, 2), p_TOPADDSUB_UPPERINPUT=Const(0, 1),
            p_TOPADDSUB_CARRYSELECT=Const(0, 2),
            p_BOTADDSUB_LOWERINPUT=Const(0, 2), p_BOTADDSUB_UPPERINPUT=Const(0, 1),
            p_BOTADDSUB_CARRYSELECT=Const(0, 2),
            p_NEG_TRIGGER=Const(0, 1),
            i_CLK=0, i_CE=1, i_A=Cat(a0, a1), i_B=Cat(b0, b1), i_C=Const(0, 16), i_D=Const(0, 16),
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=o)
        m.d.comb += [p0.eq(o[:16]), p1.eq(o[16:])]


#: The MULT18X18D's registers ``registered_product`` uses: A and B in, the product out, all
#: on CLK0 / CE0 / RST0 (RST0 held low); no pipeline register.
MULT18X18D_REGISTERS = dict(
    p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
    p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
    p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
    p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0")


def registered_product(m, platform, a, b, name, *, en=None):
    """``reg(reg(a) * reg(b))``, each register loaded while ``en`` (every cycle without):
    ``a`` and ``b`` are the operands' next values, signed or unsigned, at most 18 bits
    wide as signed numbers; the product has the shape of ``a * b``. On an ECP5 one
    MULT18X18D holds all three registers: operand registers in the fabric, and the routing
    from them into the block and out, would take most of a 100 MHz cycle. Elsewhere
    (simulation, other FPGAs) three plain registers around a multiplication."""
    a, b = Value.cast(a), Value.cast(b)
    shape = (a * b).shape()         # the behavioural product's

    def as18(v):
        w = len(v) + (0 if v.shape().signed else 1)
        assert w <= 18, f"{name}: an operand of {w} signed bits (at most 18)"
        return v.as_signed() if v.shape().signed else Cat(v, Const(0, 1)).as_signed()

    if not uses_ecp5_cells(platform):
        ra = registered(m, a, f"{name}_a", en=en)
        rb = registered(m, b, f"{name}_b", en=en)
        return registered(m, ra * rb, name, en=en)
    a18, b18 = Signal(signed(18), name=f"{name}_a18"), Signal(signed(18), name=f"{name}_b18")
    m.d.comb += [a18.eq(as18(a)), b18.eq(as18(b))]
    p = Signal(signed(36), name=f"{name}_p")
    ports = {f"i_A{k}": a18[k] for k in range(18)}
    ports |= {f"i_B{k}": b18[k] for k in range(18)}
    ports |= {f"i_C{k}": 0 for k in range(18)}
    ports |= {f"o_P{k}": p[k] for k in range(36)}
    ports |= {f"i_{pin}{k}": 0 for pin in ("CLK", "CE", "RST") for k in (1, 2, 3)}
    m.submodules[name] = Instance(
        "MULT18X18D", **MULT18X18D_REGISTERS,
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_MULT_BYPASS="DISABLED",
        p_CAS_MATCH_REG="FALSE", p_SOURCEB_MODE="B_SHIFT", p_HIGHSPEED_CLK="NONE",
        p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED", p_CLK3_DIV="ENABLED",
        i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
        i_CLK0=ClockSignal(), i_CE0=1 if en is None else en, i_RST0=0, **ports)
    q = p[:min(shape.width, 36)]
    return q.as_signed() if shape.signed else q

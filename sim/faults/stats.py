"""Statistics of fault-injection campaigns: sample sizes (Leveugle et al., DATE 2009),
Wilson intervals, stratified estimates, FIT and the ISO 26262 metrics SPFM and LFM."""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["sample_size", "wilson", "allocate", "stratified", "ASIL", "safety_metrics", "z"]

#: ISO 26262-5 hardware architectural metric targets: (SPFM, LFM).
ASIL = {"B": (0.90, 0.60), "C": (0.97, 0.80), "D": (0.99, 0.90)}


def z(confidence):
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def sample_size(population, margin, confidence, p=0.5):
    """n = N t^2 p(1-p) / (e^2 (N-1) + t^2 p(1-p)), rounded up, at most N."""
    if not 0 < margin < 1 or not 0 < confidence < 1:
        raise ValueError(f"margin and confidence must be in (0, 1), not {margin}, {confidence}")
    n_pop = int(population)
    if n_pop <= 1:
        return n_pop
    t2pq = z(confidence) ** 2 * p * (1 - p)
    return min(n_pop, math.ceil(n_pop * t2pq / (margin ** 2 * (n_pop - 1) + t2pq)))


def wilson(k, n, confidence=0.95):
    """Wilson score interval (low, high) for k events in n trials."""
    if n <= 0:
        return 0.0, 1.0
    t = z(confidence)
    p = k / n
    d = 1 + t * t / n
    c = (p + t * t / (2 * n)) / d
    h = t * math.sqrt(p * (1 - p) / n + t * t / (4 * n * n)) / d
    lo, hi = max(0.0, c - h), min(1.0, c + h)
    return (0.0 if k <= 0 else lo), (1.0 if k >= n else hi)


def allocate(populations: dict, n_total: int, minimum=30) -> dict:
    """Proportional allocation of ``n_total`` samples over strata (weights N_h / N), with at
    least ``minimum`` per stratum (never more than its population)."""
    total = sum(populations.values())
    out = {}
    for h, n_h in populations.items():
        share = math.ceil(n_total * n_h / total) if total else 0
        out[h] = int(min(n_h, max(share, minimum)))
    return out


def stratified(strata: dict, confidence=0.95):
    """Overall rate from per-stratum (N_h, k_h, n_h): p = sum W_h p_h, with a Wilson interval
    at the effective sample size p(1-p)/Var (Var = sum W_h^2 p_h(1-p_h)/n_h)."""
    big_n = sum(v[0] for v in strata.values() if v[2])
    if not big_n:
        return 0.0, 0.0, 1.0
    p = var = 0.0
    n_all = 0
    for n_pop, k, n in strata.values():
        if not n:
            continue
        w = n_pop / big_n
        ph = k / n
        p += w * ph
        var += w * w * ph * (1 - ph) / n
        n_all += n
    n_eff = p * (1 - p) / var if var > 0 else n_all
    lo, hi = wilson(p * n_eff, n_eff, confidence)
    return p, lo, hi


def safety_metrics(rows, fit_per_bit):
    """FIT and ISO 26262 metrics from per-structure rows
    ``{bits, sdc: (p, lo, hi), latent: (p, lo, hi)}``.

    FIT_raw = fit_per_bit * bits; FIT_SDC = sum FIT_raw * AVF_SDC (residual / single-point);
    SPFM = 1 - FIT_SDC / FIT_raw; LFM = 1 - FIT_latent / (FIT_raw - FIT_SDC), where latent
    faults left the outputs intact but stay in the design, undetected, at the end of the run.
    Each value comes with (estimate, pessimistic, optimistic) from the interval ends.
    """
    raw = sum(fit_per_bit * r["bits"] for r in rows)
    out = {"fit_raw": raw}
    for i, tag in enumerate(("", "_hi", "_lo")):
        # index 0 estimate, 2 the interval's upper end (pessimistic), 1 the lower end
        j = (0, 2, 1)[i]
        sdc = sum(fit_per_bit * r["bits"] * r["sdc"][j] for r in rows)
        lat = sum(fit_per_bit * r["bits"] * r["latent"][j] for r in rows)
        out[f"fit_sdc{tag}"] = sdc
        out[f"fit_latent{tag}"] = lat
        out[f"spfm{tag}"] = 1 - sdc / raw if raw else 1.0
        out[f"lfm{tag}"] = 1 - lat / (raw - sdc) if raw > sdc else 1.0
    out["asil"] = max((a for a, (s, l) in ASIL.items()
                       if out["spfm"] >= s and out["lfm"] >= l), default="QM")
    return out

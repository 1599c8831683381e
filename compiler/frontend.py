"""Model capture with torch.export, calibration, and a compiled model that runs its linear
layers on an accelerator executor and everything else on the host in float.

Any module that torch.export can capture works: every ``aten.linear`` becomes a compiled
kernel (int8 weights per output channel, static int8 activations calibrated on sample
inputs); the remaining graph runs on the host as the captured graph's own Python code, its
linear calls rewritten to go through a hook (calibration and the accelerator both set it).
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx

from hw.engines import spec
from .lower import CompileError, Target, lower_linear, pad_to
from .qweight import MULT_BITS, QWeight, effective, multipliers, placement
from .quantize import act_scale, quantize_act, requant_params, weight_format

__all__ = ["capture", "compile_model", "CompiledModel", "CompileError", "lower_layer"]

_LINEAR = torch.ops.aten.linear.default


def capture(module, example_inputs):
    """torch.export the module; return the unlifted graph module, each ``aten.linear``
    rewritten to ``linear_hook(name, x, w, b)``."""
    try:
        ep = torch.export.export(module, tuple(example_inputs))
    except Exception as e:          # torch raises many types; the user needs one line
        raise CompileError(f"torch.export could not capture the model: "
                           f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    gm = ep.module()
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is _LINEAR:
            node.target = linear_hook
            node.args = (_linear_name(node), *node.args)
    gm.recompile()
    return gm


def _linear_name(node):
    w = node.args[1]
    return w.target if w.op == "get_attr" else w.name


_HOOK = contextvars.ContextVar("linear_hook", default=None)


def linear_hook(name, x, w, b=None):
    """A captured graph's linear layer: the running hook's result, or plain float."""
    hook = _HOOK.get()
    if hook is None:
        return torch.nn.functional.linear(x, w, b)
    return hook(name, x, w, b)


def _run_hooked(gm, hook, inputs):
    # forward() itself, not __call__: the export's input-shape check is the kernels' job
    token = _HOOK.set(hook)
    try:
        return gm.forward(*inputs)
    finally:
        _HOOK.reset(token)


@dataclass
class CompiledModel:
    """Linear kernels plus the host graph around them."""
    gm: object
    kernels: dict
    config: object
    order: list = field(default_factory=list)

    def run(self, inputs, executor, *, check=None, progress=None, after=None):
        """Run on ``executor``; with ``check`` (another executor, e.g. the golden model)
        every kernel also runs there and the int8 outputs are compared bit for bit.
        ``after(name, stats)`` is called after each kernel's run on ``executor``.

        Returns (outputs, report) where report holds per-kernel stats and mismatches.
        """
        report = {"kernels": [], "mismatches": [], "cycles": 0, "macs": 0,
                  "padded_macs": 0, "sim_wall_s": 0.0, "sim_cycles": 0}

        def on_linear(name, x, w, b=None):
            kern = self.kernels[name]
            lead = x.shape[:-1]
            x2 = x.detach().reshape(-1, x.shape[-1]).numpy()
            if x2.shape[0] != kern.m:
                raise CompileError(f"{name}: compiled for M={kern.m} rows, got {x2.shape[0]}")
            xq = quantize_act(x2, kern.x_scale)
            mem = kern.memory.copy()
            kern.write_input(mem, xq)
            t0 = time.perf_counter()
            out_mem, st = executor.run(kern.program, mem)
            wall = time.perf_counter() - t0
            if after:
                after(name, st)
            if st.get("error"):
                raise RuntimeError(f"{name}: accelerator error {st['error']}")
            yq = kern.read_output(out_mem)
            entry = {"name": name, "m": kern.m, "k": kern.k, "n": kern.n, "macs": kern.macs,
                     "engine": kern.engine.name.lower(), "wbits": kern.wbits, "peak": kern.peak,
                     "cycles": st.get("cycles"), "wall_s": wall,
                     "array_macs": st.get("macs")}
            if check is not None:
                ref_mem, ref_st = check.run(kern.program, mem)
                ref = kern.read_output(ref_mem)
                same = bool(np.array_equal(ref, yq)) and ref_mem.data == out_mem.data
                entry["bit_exact"] = same
                if not same:
                    report["mismatches"].append(name)
            report["kernels"].append(entry)
            report["cycles"] += st.get("cycles") or 0
            report["sim_cycles"] += st.get("sim_cycles") or st.get("cycles") or 0
            report["macs"] += kern.macs
            report["peak_cycles"] = report.get("peak_cycles", 0.0) + kern.macs / kern.peak
            report["padded_macs"] += st.get("macs") or 0
            report["sim_wall_s"] += wall
            if progress:
                progress(f"{name}: {kern.m}x{kern.k}x{kern.n}"
                         + (f", {st['cycles']} cycles" if st.get("cycles") else ""))
            y = torch.from_numpy(yq.astype(np.float32) * kern.y_scale.astype(np.float32))
            if b is not None:
                y = y + b
            return y.reshape(*lead, kern.n)

        with torch.no_grad():
            out = _run_hooked(self.gm, on_linear, inputs)
        return out, report


def lower_layer(config, name, m, w, x_absmax, y_absmax, fmt="int8", *, group=128,
                pad_groups=True, into=None, requantize=False):
    """Lower a linear layer for ``m`` rows with static activation ranges.

    ``w``: float ``[N, K]``, quantized here in weight format ``fmt`` (LUT formats in groups
    of ``group`` input features, the last may be short unless ``pad_groups`` is False); or
    a model file's integer weights (compiler.qweight.QWeight), whose codes are kept and
    whose engine follows from them (``fmt`` and ``group`` unused). A file's format that no
    engine of ``config`` holds is an error, or with ``requantize`` is re-quantized in the
    format compiler.qweight.placement names.
    """
    if isinstance(w, QWeight):
        place = placement(config, w)
        if not place.exact:
            if not requantize:
                raise CompileError(f"{name}: {w.kind} cannot run exactly: {place.why}; "
                                   f"--requantize converts it to {place.fmt}")
            return lower_layer(config, name, m, w.dequant(), x_absmax, y_absmax, place.fmt,
                               into=into)
        return _lower_codes(config, name, m, w, place.fmt, x_absmax, y_absmax, into)
    fmt = weight_format(getattr(fmt, "name", fmt))
    es = spec(Target(config).engine_for(fmt))
    k = w.shape[1]
    kp = pad_to(k, es.act_group)
    group = kp if group is None or not fmt.grouped else int(group)
    if group <= 0 or group % es.act_group:
        raise CompileError(f"{name}: group size {group} must be a positive multiple of "
                           f"{es.act_group} (the {es.name} engine's activation group)")
    if k % group and not pad_groups:
        raise CompileError(f"{name}: group size {group} does not divide K={k} and group "
                           f"padding is off")
    q, s = fmt.quantize(w, group)
    qw = QWeight(q, s, None, group if s.shape[1] > 1 else kp, fmt.wbits, fmt.name,
                 fmt.name == "ternary")
    return _lower_codes(config, name, m, qw, fmt, x_absmax, y_absmax, into)


def _lower_codes(config, name, m, qw, fmt, x_absmax, y_absmax, into):
    """Lower integer codes with their scales (and offsets): one scale per channel goes
    into the REQUANT multiplier; group scales and offsets become int16 group multipliers
    (compiler.qweight.multipliers) on the MATMULs' scaled drain."""
    fmt = weight_format(getattr(fmt, "name", fmt))
    sx, sy = act_scale(x_absmax), act_scale(y_absmax)
    n, k = qw.shape
    if qw.scale.shape[1] == 1 and qw.offset is None:
        mult, shift = requant_params(sx * qw.scale[:, 0] / sy)
        gmult = omult = grp = None
        gshift = 0
        w_dequant = qw.dequant()
    else:
        gmult, omult, e = multipliers(qw)
        kp = pad_to(k, spec(Target(config).engine_for(fmt)).act_group)
        top = int(np.abs(qw.codes).max(initial=1)) + (omult is not None)
        bound = kp * 128 * top * (1 << MULT_BITS)              # worst-case |accumulator|
        gshift = max(0, int(np.ceil(np.log2(bound / 2.0 ** 30))))
        mult, shift = requant_params(sx * np.ldexp(1.0, e + gshift - MULT_BITS) / sy)
        grp = qw.group
        w_dequant = effective(qw)
    kern = lower_linear(config, name, m, qw.codes, mult, shift, fmt=fmt, x_scale=sx,
                        y_scale=np.full(n, sy), group=grp, gmult=gmult, gshift=gshift,
                        goff=omult, x_perm=qw.perm, into=into)
    kern.w_dequant = w_dequant
    kern.kind = qw.kind
    return kern


def compile_model(module, calib_inputs, config, *, wformat="int8", group=128,
                  pad_groups=True, progress=None) -> CompiledModel:
    """Capture ``module`` on ``calib_inputs[0]``, calibrate on all of them, compile every
    linear layer for ``config``.

    ``wformat`` is a weight format name (int8, w1..w4, ternary) or a dict from layer name
    to format with ``"*"`` as the default: the per-layer choice of engine follows from it.
    """
    gm = capture(module, calib_inputs[0])
    stats = {}

    def record(name, x, w, b=None):
        y = torch.nn.functional.linear(x, w, b)
        s = stats.setdefault(name, {"x": 0.0, "y": 0.0, "w": w.detach().numpy().copy(),
                                    "m": int(np.prod(x.shape[:-1]))})
        s["x"] = max(s["x"], float(x.detach().abs().max()))
        s["y"] = max(s["y"], float((y - (b if b is not None else 0)).detach().abs().max()))
        return y

    with torch.no_grad():
        for inp in calib_inputs:
            _run_hooked(gm, record, inp)
    if not stats:
        raise CompileError("the model has no linear layers to put on the accelerator")
    formats = wformat if isinstance(wformat, dict) else {"*": wformat}
    kernels = {}
    for name, s in stats.items():
        fmt = formats.get(name, formats.get("*", "int8"))
        n, k = s["w"].shape
        if progress:
            progress(f"lowering {name} ({s['m']}x{k}x{n}, {fmt})")
        try:
            kernels[name] = lower_layer(config, name, s["m"], s["w"], s["x"], s["y"], fmt,
                                        group=group, pad_groups=pad_groups)
        except ValueError as e:         # an unknown format name
            raise CompileError(f"{name}: {e}") from None
    return CompiledModel(gm, kernels, config, list(stats))

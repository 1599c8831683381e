"""Workloads for fault campaigns: the programs to run, their inputs, and (for LLM workloads)
how a corrupted output changes what the model computes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Kernel", "Workload", "WORKLOADS", "make_workload"]


@dataclass
class Kernel:
    name: str
    program: object         # sw.program.Program
    memory: object          # sw.program.MemoryImage, inputs written
    read_output: object     # MemoryImage -> np.ndarray (the kernel's result tensor)


@dataclass
class Workload:
    """``kernels`` run one after another; ``effect(i, out)`` (optional) says what a corrupted
    output ``out`` of kernel ``i`` does to the model: a dict of numbers."""
    name: str
    kernels: list
    effect: object = None
    info: dict = field(default_factory=dict)


class _Recorder:
    """Executor wrapper recording every (program, memory) it is asked to run."""

    def __init__(self, inner):
        self.inner, self.calls, self.outs = inner, [], []

    def run(self, program, memory):
        self.calls.append((program, memory.copy()))
        out, st = self.inner.run(program, memory)
        self.outs.append(out)
        return out, st


class _Replay:
    """Executor returning given output memories in call order (one may be a faulty one)."""

    def __init__(self, outputs):
        self.outputs, self.i = outputs, 0

    def run(self, program, memory):
        out = self.outputs[self.i]
        self.i += 1
        return out, {"cycles": 0}


def demo_workload(config, seed=0, tokens=16):
    """The demo decoder block (the shape ``llmaccel demo`` picks for this config), every
    linear layer one kernel. The model effect of a corrupted layer output: its relative error,
    the block output's relative error, and whether the block's top-1 prediction changes
    (argmax of a fixed seeded unembedding, 512 entries, of each token's output)."""
    import torch
    from compiler.frontend import compile_model
    from compiler.models import demo_inputs, demo_shape, make_block
    from sw.golden import Machine

    shape = demo_shape(config)
    blk = make_block(shape, seed=seed)
    calib, x = demo_inputs(blk, tokens, seed)
    cm = compile_model(blk, calib, config)
    rec = _Recorder(Machine(config))
    y_ref, _ = cm.run((x,), rec)
    kerns = [cm.kernels[n] for n in _call_order(cm, rec)]
    unembed = torch.randn(512, blk.s.hidden, generator=torch.Generator().manual_seed(seed + 2))
    top_ref = (y_ref @ unembed.T).argmax(-1)
    golden_outs = rec.outs

    def effect(i, out_mem):
        k = kerns[i]
        ref, got = k.read_output(golden_outs[i]).astype(np.float64), \
            k.read_output(out_mem).astype(np.float64)
        layer_err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
        outs = list(golden_outs)
        outs[i] = out_mem
        y, _ = cm.run((x,), _Replay(outs))
        blk_err = float((y - y_ref).norm() / y_ref.norm())
        top = (y @ unembed.T).argmax(-1)
        return {"layer_rel_err": layer_err, "block_rel_err": blk_err,
                "top1_changed": int(bool((top != top_ref).any()))}

    kernels = [Kernel(k.name.removesuffix(".weight"), p, m, k.read_output)
               for k, (p, m) in zip(kerns, rec.calls)]
    return Workload("demo", kernels, effect,
                    {"shape": shape, "tokens": tokens, "layers": [k.name for k in kernels]})


def _call_order(cm, rec):
    # kernels are called in graph order; match each recorded program to its kernel
    by_prog = {id(k.program): n for n, k in cm.kernels.items()}
    return [by_prog[id(p)] for p, _ in rec.calls]


def matmul_workload(config, seed=0, k=None):
    """One small MATMUL (``rows`` x ``k`` by ``k`` x ``cols``) with its loads and store: a
    workload short enough for exhaustive campaigns."""
    from compiler.asm import Assembler, mask
    from hw.isa import Buffer, Queue as Q
    from sw.program import MemoryImage

    rng = np.random.default_rng(seed)
    R, C = config.rows, config.cols
    k = k or 2 * R
    a = rng.integers(-128, 128, (k, R), dtype=np.int8)
    w = rng.integers(-128, 128, (k, C), dtype=np.int8)
    mem = MemoryImage(bytearray())
    aa, wa = mem.write("a", a), mem.write("w", w)
    oa = mem.reserve("acc", (C, R), np.int32, row_stride=4 * R)
    asm = Assembler(config)
    asm.load(Buffer.ACT, 0, aa, k, R)
    asm.load(Buffer.WGT, 0, wa, k, C, release=mask(Q.COMPUTE))
    asm.matmul(0, 0, 0, k, wait=mask(Q.LOAD), release=mask(Q.STORE))
    asm.store(Buffer.ACC, 0, oa, C, 4 * R, wait=mask(Q.COMPUTE))
    return Workload("matmul", [Kernel("matmul", asm.program(), mem,
                                      lambda mm: mm.read("acc"))], None, {"k": k})


WORKLOADS = {"demo": demo_workload, "matmul": matmul_workload}


def make_workload(name, config, seed=0):
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return WORKLOADS[name](config, seed=seed)

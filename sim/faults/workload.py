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
    pos: int = 0            # the run's position (hw.position)


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


def generate_workload(config, seed=0, prompt="The accelerator ", steps=2):
    """Token generation with the trained model (models/charlm): the prefill of ``prompt``
    and the decode runs of ``steps`` new tokens, each one kernel over the whole memory
    image (weights, KV cache as the golden run left it). The effect of a corrupted run:
    whether the token it picks changes, and its logits' largest change."""
    from compiler.generate import Generator
    from compiler.llm import compile_llm
    from compiler.llmquant import quantize_model
    from compiler.modelload import calibration, encode, load
    from sw.golden import Machine
    from sw.program import MemoryImage

    model, tok, corpus = load(str(_charlm()))
    qm = quantize_model(model, calibration(model, tok, corpus, 64, seed=seed))
    cm = compile_llm(config, qm)
    ids = encode(tok, prompt)
    golden = Machine(config)
    R, vocab = config.rows, cm.model.vocab_size
    kernels, tokens, images = [], [], []

    class _Snap:        # the data image just before each run of the generation
        def __init__(self, inner):
            self.inner, self.config = inner, inner.config

        def mem_write(self, addr, data):
            self.inner.mem_write(addr, data)

        def mem_read(self, addr, n):
            return self.inner.mem_read(addr, n)

        def execute(self, prog_addr, pos=0):
            images.append((prog_addr, pos, self.inner.mem_read(0, cm.memory.size)))
            return self.inner.execute(prog_addr, pos)
    gen = Generator(cm, _Snap(golden))
    out = gen.generate(ids, steps)
    by_addr = {a: n for n, a in gen.session.addr.items()}
    for i, ((addr, pos, image), tok_id) in enumerate(zip(images, out.tokens)):
        name = by_addr[addr]
        mp = R if name.startswith("decode") else int(name.removeprefix("prefill"))
        lane = pos % R if name.startswith("decode") else len(ids) - 1

        def read(mm, mp=mp, lane=lane):
            return mm.read(f"logits@{mp}")[:vocab, lane].copy()
        kernels.append(Kernel(f"{name}@{pos}", cm.programs[name],
                              MemoryImage(bytearray(image), dict(cm.memory.symbols)), read, pos))
        tokens.append(tok_id)

    def effect(i, out_mem):
        got = kernels[i].read_output(out_mem).astype(np.int64)
        ref = out.logits[i].astype(np.int64)
        err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
        return {"top1_changed": int(int(np.argmax(got)) != tokens[i]), "layer_rel_err": err}
    return Workload("generate", kernels, effect,
                    {"prompt": prompt, "tokens": tokens, "runs": [k.name for k in kernels]})


def _charlm():
    from pathlib import Path
    return Path(__file__).resolve().parents[2] / "models" / "charlm"


WORKLOADS = {"demo": demo_workload, "matmul": matmul_workload, "generate": generate_workload}


def make_workload(name, config, seed=0):
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return WORKLOADS[name](config, seed=seed)

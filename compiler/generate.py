"""Token generation: a compiled model in one executor session, the host doing only the
embedding lookup and the sampling (greedy: the largest int8 logit, the first on a tie)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sw.executor import Session
from .llm import CompiledLLM
from .lower import CompileError

__all__ = ["Generator", "Generation"]


@dataclass
class Generation:
    tokens: list                                    # the new tokens
    logits: list = field(default_factory=list)      # int8 [vocab] before each new token
    runs: list = field(default_factory=list)        # (program, pos, stats) per run


class Generator:
    """``cm``'s memory image and programs loaded once into ``executor``."""

    def __init__(self, cm: CompiledLLM, executor):
        self.cm = cm
        self.session = Session(executor, cm.memory, cm.programs)

    def _run(self, name, pos, gen):
        st = self.session.run(name, pos)
        gen.runs.append((name, pos, st))
        if st.get("error"):
            raise RuntimeError(f"{name} at position {pos}: accelerator error {st['error']}")
        return st

    def _logits(self, mp, lane):
        return self.session.read(f"logits@{mp}")[:self.cm.model.vocab_size, lane].copy()

    def generate(self, prompt, n_new, *, on_token=None) -> Generation:
        """Prefill ``prompt`` (token ids), then ``n_new`` greedy tokens, one decode run each.
        ``on_token(i, token, stats)`` follows every new token."""
        cm, R = self.cm, self.cm.config.rows
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise CompileError("the prompt is empty")
        bad = [t for t in prompt if not 0 <= t < cm.model.vocab_size]
        if bad:
            raise CompileError(f"token {bad[0]} is outside the vocabulary "
                               f"(0..{cm.model.vocab_size - 1})")
        if len(prompt) + n_new - 1 > cm.max_len:
            raise CompileError(f"{len(prompt)} prompt tokens and {n_new} new ones need "
                               f"{len(prompt) + n_new - 1} cache positions; the programs have "
                               f"{cm.max_len}")
        gen = Generation([])
        t = len(prompt)
        tb = cm.prefill_bucket(t)
        self.session.write(f"x@{tb}", cm.embed_slot(np.array(prompt), tb))
        st = self._run(f"prefill{tb}", 0, gen)
        logits = self._logits(tb, t - 1)
        for i in range(n_new):
            tok = int(np.argmax(logits))
            gen.logits.append(logits)
            gen.tokens.append(tok)
            if on_token:
                on_token(i, tok, st)
            if i == n_new - 1:
                break
            pos = t + i
            self.session.write(f"x@{R}", cm.embed_slot(np.array([tok]), R, pos % R))
            st = self._run(f"decode{cm.decode_bucket(pos)}", pos, gen)
            logits = self._logits(R, pos % R)
        return gen

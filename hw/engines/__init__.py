"""The MATMUL engines, one module each, in one registry keyed by the ISA's ``Engine`` tag.

An engine's spec is what the rest of the accelerator knows of it: the output channels of one
MATMUL, the steps (weight-scratchpad entries) it takes, which modes it accepts, how it reads
the activations, and the component that computes it. Every rule is written once, on plain
integers and on Amaranth values alike, so the compute unit's checks and the golden model's
are the same expressions (tests/test_engines.py evaluates both). The compute unit, the golden
model and the compiler loop over this registry and name no engine; docs/engines.md says how
to add one.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.lib import data

from ..isa import Engine, mode_fields, mode_layout
from .base import EngineSpec, engine_signature, feed_layout, inflight_layout, is_value
from .bitserial import BitSerialSpec
from .lut import LutSpec
from .systolic import SystolicSpec

__all__ = ["EngineSpec", "SPECS", "spec", "specs_of", "act_banks", "mode_legal", "mode_view",
           "is_value", "engine_signature", "feed_layout", "inflight_layout"]

#: Every engine the ISA names, by tag (a test fails when a tag has no entry here).
SPECS = {s.tag: s for s in (SystolicSpec(), LutSpec(), BitSerialSpec())}


def spec(engine) -> EngineSpec:
    """The spec of ``engine`` (an ``Engine`` tag or its name)."""
    if isinstance(engine, str):
        engine = Engine[engine.upper()]
    return SPECS[Engine(engine)]


def specs_of(cfg):
    """The specs of the engines configuration ``cfg`` builds, in tag order."""
    return [s for t, s in sorted(SPECS.items(), key=lambda x: x[0].value)
            if s.name in cfg.engines]


def act_banks(cfg):
    """Banks of the activation scratchpad: the most entries an engine reads at once."""
    return max(es.act_group for es in specs_of(cfg))


def mode_legal(engine, raw):
    """Whether the ``raw`` mode bits set none beyond ``engine``'s mode (int or Value)."""
    size = data.Layout.cast(mode_layout(engine)).size
    return (raw >> size) == 0


def mode_view(engine, raw):
    """``engine``'s mode from a decoded MATMUL's ``raw`` bits, as the rules read it (named
    fields), or None when the bits are illegal."""
    fields = mode_fields(engine, raw)
    return None if fields is None else SimpleNamespace(**fields)

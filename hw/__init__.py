"""Hardware: configuration, ISA and the Amaranth generators."""

from .config import AccelConfig, ConfigError, load_config

__all__ = ["AccelConfig", "ConfigError", "load_config", "Accelerator", "verilog"]


def __getattr__(name):          # keep `import hw` light: amaranth elaboration on demand
    if name == "Accelerator":
        from .accelerator import Accelerator
        return Accelerator
    raise AttributeError(name)


def verilog(config, *, name="llmaccel_top", platform=None) -> str:
    """Generate the accelerator's Verilog for ``config`` (as elaborated for ``platform``:
    vendor primitives such as hw/dsp.py's appear only for a platform that has them)."""
    from amaranth.back import verilog as back
    from .accelerator import Accelerator
    return back.convert(Accelerator(config), name=name, emit_src=False, platform=platform)

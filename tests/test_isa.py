from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from amaranth.hdl import Shape
from amaranth.lib import data

from hw import isa
from hw.isa_doc import render
from sw.program import MemoryImage, Program, ProgramError


def _field_strategy(fmt):
    fields = {}
    for name, f in data.Layout.cast(fmt):
        if name == "opcode":
            continue
        if isinstance(f.shape, type) and issubclass(f.shape, isa.enum.Enum):
            fields[name] = st.sampled_from(list(f.shape))
        else:
            fields[name] = st.integers(0, (1 << Shape.cast(f.shape).width) - 1)
    return st.fixed_dictionaries(fields)


@pytest.mark.parametrize("op", list(isa.Opcode))
@settings(max_examples=200, deadline=None)
@given(data_=st.data())
def test_encode_decode_round_trip(op, data_):
    fields = data_.draw(_field_strategy(isa.FORMATS[op]))
    word = isa.encode(op, **fields)
    assert 0 <= word < 1 << isa.INSN_BITS
    back = isa.decode(word)
    assert back.pop("opcode") == op
    assert back == fields
    assert isa.encode(op, **back) == word


def test_formats_fit_and_share_the_header():
    for fmt in isa.FORMATS.values():
        layout = data.Layout.cast(fmt)
        assert layout.size <= isa.INSN_BITS
        head = [(n, f.offset) for n, f in layout][:3]
        assert head == [("opcode", 0), ("wait", 4), ("release", 7)]


def test_encode_errors():
    with pytest.raises(isa.IsaError, match=r"MATMUL.k = 65536 does not fit in 16 bits"):
        isa.encode(isa.Opcode.MATMUL, k=65536)
    with pytest.raises(isa.IsaError, match=r"LOAD has no field 'k'"):
        isa.encode(isa.Opcode.LOAD, k=1)
    with pytest.raises(isa.IsaError, match=r"illegal opcode 0"):
        isa.decode(0)


def test_isa_doc_is_current():
    doc = Path(__file__).resolve().parent.parent / "docs" / "isa.md"
    assert doc.read_text() == render(), "docs/isa.md is stale: run `make docs`"


def test_program_header_round_trip_and_corruption(tiny):
    p = Program([isa.encode(isa.Opcode.SYNC, queue=isa.Queue.LOAD), isa.encode(isa.Opcode.END)],
                tiny.hash)
    blob = p.to_bytes()
    assert Program.from_bytes(blob).words == p.words
    with pytest.raises(ProgramError, match=r"bad magic"):
        Program.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(ProgramError, match=r"checksum mismatch"):
        Program.from_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ProgramError, match=r"truncated or padded"):
        Program.from_bytes(blob[:-3])
    with pytest.raises(ProgramError, match=r"too short"):
        Program.from_bytes(blob[:10])
    with pytest.raises(ProgramError, match=r"compiled for another configuration"):
        p.check_config(tiny.replace(act_depth=1024))


def test_memory_image_files(tmp_path):
    import numpy as np
    m = MemoryImage(bytearray())
    m.write("a", np.arange(12, dtype=np.int8).reshape(3, 4), row_stride=8)
    m.save(tmp_path / "m.npz")
    back = MemoryImage.load(tmp_path / "m.npz")
    assert (back.read("a") == m.read("a")).all()
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ProgramError, match=r"not a memory image"):
        MemoryImage.load(tmp_path / "bad.npz")

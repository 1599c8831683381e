import pytest

from hw.config import AccelConfig, ConfigError, load_config, preset_names


def test_presets_load():
    names = preset_names()
    assert {"tiny", "default", "ice40"} <= set(names)
    d = load_config("default")
    assert (d.rows, d.cols) == (16, 16)
    assert d.peak_macs_per_cycle == 256
    assert d.scale_lanes == d.bus_bytes // 2


def test_hash_ignores_memory_model_but_not_shape():
    d = load_config("default")
    assert d.replace(mem_latency=99).hash == d.hash
    assert d.replace(act_depth=1024).hash != d.hash


@pytest.mark.parametrize("field,value,msg", [
    ("rows", 0, r"rows \(systolic array rows\) must be an integer in \[1, 64\], not 0"),
    ("bus_bytes", 6, r"bus_bytes .* must be a power of two, not 6"),
    ("cols", 6, r"cols must be a multiple of bus_bytes \(16\)"),
    ("act_depth", "big", r"act_depth .* must be an integer in \[16, 65536\], not 'big'"),
    ("mem_bytes_per_cycle", 32, r"mem_bytes_per_cycle"),
])
def test_bad_values_name_the_field(field, value, msg):
    with pytest.raises(ConfigError, match=msg):
        AccelConfig(**{field: value})


def test_bad_files(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("rows = [")
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_config(str(p))
    p.write_text("rows = 4\ncols = 4\nbus_bytes = 4\nwarp = 3\n")
    with pytest.raises(ConfigError, match=r"unknown field 'warp'"):
        load_config(str(p))
    p.write_text("rows = 100\n")
    with pytest.raises(ConfigError, match=r"bad.toml: .*rows .* not 100"):
        load_config(str(p))
    with pytest.raises(ConfigError, match=r"unknown configuration 'nope'; presets are"):
        load_config("nope")

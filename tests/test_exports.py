import importlib
import pkgutil

import pytest

PACKAGES = ["hw", "sw", "sim", "compiler", "boards"]


def _modules():
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        yield pkg
        for info in pkgutil.iter_modules(mod.__path__):
            yield f"{pkg}.{info.name}"


@pytest.mark.parametrize("name", list(_modules()))
def test_every_name_in_all_exists(name):
    mod = importlib.import_module(name)
    for attr in getattr(mod, "__all__", []):
        assert hasattr(mod, attr), f"{name}.__all__ lists {attr!r} which does not exist"

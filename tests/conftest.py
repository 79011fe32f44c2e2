"""pytest's fixtures and hooks for the rnnkit test suite; the shared helpers
are in helpers.py.

Every kernel test runs once per ISA this CPU supports (the `isa` fixture)
and, where it matters, once per dtype (the `dtype` fixture).
"""

import numpy as np
import pytest

from helpers import require_optional, rnnkit


# torch and rnnkit.torch as fixtures, through require_optional.
@pytest.fixture(scope="module")
def torch():
    return require_optional("torch")


@pytest.fixture(scope="module")
def rt(torch):
    import rnnkit.torch
    return rnnkit.torch


def pytest_generate_tests(metafunc):
    # Parametrize over the ISAs of *this* CPU, known only once rnnkit is
    # imported; done here rather than in a fixture's params so a missing
    # build does not break collection of test_reference.py.
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", list(rnnkit.available_isas()), indirect=True)


@pytest.fixture
def isa(request):
    """The ISA under test, made active for the whole test (packs made in the
    test are made for it) and restored afterwards."""
    with rnnkit.use_isa(request.param):
        assert rnnkit.isa() == request.param
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)

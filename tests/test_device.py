"""Device and thread choice shared by every command."""

import os

import pytest
from conftest import SESSION_THREADS

from engine import device
from engine.errors import EngineError


@pytest.mark.parametrize(("load", "own", "expected"), [(0.3, 0.0, 4), (3.9, 0.0, 4), (4.0, 0.0, 1), (4.5, 1.0, 4),
                                                       (9.0, 1.0, 1)])
def test_threads_follow_the_load_average(monkeypatch, load, own, expected):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert device.threads_for_load(4, own_load=own) == expected


def test_set_threads_honours_an_explicit_count():
    assert device.set_threads(SESSION_THREADS + 1) == SESSION_THREADS + 1  # conftest restores the count


def test_the_next_test_starts_at_the_sessions_thread_count():
    """Runs after the test above (file order), which left another count: conftest's fixture restored it."""
    assert device.torch.get_num_threads() == SESSION_THREADS


def test_cuda_request_without_cuda_is_a_clear_error():
    if device.torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EngineError, match="CUDA is not available"):
        device.select_device("cuda")
    assert device.select_device("auto").type == "cpu"

"""Thread limits of small CPU problems: one thread inside, the caller's settings restored after."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import brainalign.rsa._backend as backend
import brainalign.rsa.compare as compare_module
from brainalign.rsa import compare_rdms, noise_ceiling, permutation_test


def thread_settings():
    """torch's threads and every loaded BLAS/OpenMP library's threads."""
    return torch.get_num_threads(), sorted(
        (lib["filepath"], lib["num_threads"]) for lib in threadpool_info()
    )


@pytest.fixture
def two_threads():
    """The caller runs with two threads everywhere (restored after the test)."""
    before = torch.get_num_threads()
    with threadpool_limits(limits=2):
        torch.set_num_threads(2)
        try:
            yield thread_settings()
        finally:
            torch.set_num_threads(before)


def spy_on_compare(monkeypatch, *, fail=False):
    """Record the thread settings seen inside compare_rdms's kernel (optionally raise there)."""
    seen = []
    original = compare_module._compare_with_nans

    def spy(*args, **kwargs):
        seen.append(thread_settings())
        if fail:
            raise RuntimeError("kernel failed")
        return original(*args, **kwargs)

    monkeypatch.setattr(compare_module, "_compare_with_nans", spy)
    return seen


def test_small_problem_runs_on_one_thread_and_restores_settings(rng, monkeypatch, two_threads):
    seen = spy_on_compare(monkeypatch)
    a, b = rng.random((7, 36)), rng.random((3, 36))
    compare_rdms(a, b, "corr")
    torch_threads, libraries = seen[0]
    assert torch_threads == 1
    assert all(n == 1 for _, n in libraries)
    assert thread_settings() == two_threads


def test_large_problem_keeps_the_callers_threads(rng, monkeypatch, two_threads):
    monkeypatch.setattr(backend, "SMALL_PROBLEM_VALUES", 10)  # 7 x 36 values: "large"
    seen = spy_on_compare(monkeypatch)
    compare_rdms(rng.random((7, 36)), rng.random((3, 36)), "corr")
    assert seen[0] == two_threads
    assert thread_settings() == two_threads


def test_settings_restored_when_the_call_raises(rng, monkeypatch, two_threads):
    spy_on_compare(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="kernel failed"):
        compare_rdms(rng.random((2, 10)), rng.random((2, 10)), "spearman")
    assert thread_settings() == two_threads


def test_nested_limits_and_public_functions_restore_settings(rng, two_threads):
    data, models = rng.random((4, 45)), rng.random((3, 45))
    with backend.single_thread():
        assert torch.get_num_threads() == 1
        compare_rdms(data, models, "tau-a")  # nested limit
        assert torch.get_num_threads() == 1
    assert thread_settings() == two_threads
    permutation_test(data, models, "spearman", n_permutations=20, seed=0)
    noise_ceiling(data, "corr")
    assert thread_settings() == two_threads


def test_limits_leave_results_unchanged(rng, monkeypatch):
    data, models = rng.random((5, 66)), rng.random((4, 66))
    limited = compare_rdms(data, models, "corr_cov")
    monkeypatch.setattr(backend, "SMALL_PROBLEM_VALUES", -1)  # never limit
    np.testing.assert_allclose(compare_rdms(data, models, "corr_cov"), limited, atol=1e-13)


def test_other_devices_are_left_alone(two_threads):
    with backend.threads_for(1, torch.device("meta")):
        assert thread_settings() == two_threads

"""Retrieval metrics and protocols against brute-force references written here.

The references hold the full similarity matrix and loop over queries; the library streams over
blocks. Sizes (37 queries, 101 gallery items, 9 features, chunks of 16) divide nothing, so a
block-boundary bug or a transposed axis cannot pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

from brainalign._utils.errors import BrainAlignWarning
from brainalign.evaluate import retrieval as R

N_Q, N_G, N_F, CHUNK = 37, 101, 9, 16
SIMILARITIES = ("cosine", "dot", "correlation")
BACKENDS = ("numpy", "torch")
TIES = ("average", "optimistic", "pessimistic")


# ---------------------------------------------------------------------------------------------
# Brute-force references
# ---------------------------------------------------------------------------------------------


def similarity_matrix(q: np.ndarray, g: np.ndarray, similarity: str) -> np.ndarray:
    """Full (n_q, n_g) similarity matrix, the textbook way."""
    q, g = np.asarray(q, dtype=np.float64), np.asarray(g, dtype=np.float64)
    if similarity == "correlation":
        q = q - q.mean(axis=1, keepdims=True)
        g = g - g.mean(axis=1, keepdims=True)
    if similarity in ("cosine", "correlation"):
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    return q @ g.T


def brute_counts(sim: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, competitors strictly above and exactly equal to the true item."""
    greater, equal = [], []
    for i, t in enumerate(targets):
        true = sim[i, t]
        others = np.delete(sim[i], t)
        greater.append(int(np.sum(others > true)))
        equal.append(int(np.sum(others == true)))
    return np.array(greater), np.array(equal)


def brute_metrics(
    greater: np.ndarray, equal: np.ndarray, n_gallery: np.ndarray | int, ks, ties: str
) -> dict[str, float]:
    """Metrics by enumerating the true item's possible places among its ties."""
    n_gallery = np.broadcast_to(n_gallery, greater.shape)
    rank_lists = []
    for g, e in zip(greater, equal):
        if ties == "optimistic":
            places = [1 + g]
        elif ties == "pessimistic":
            places = [1 + g + e]
        else:  # uniformly random order of the e + 1 tied items
            places = [1 + g + j for j in range(e + 1)]
        rank_lists.append(places)
    out = {f"top{k}": np.mean([np.mean([r <= k for r in p]) for p in rank_lists]) for k in ks}
    out["mrr"] = np.mean([np.mean([1 / r for r in p]) for p in rank_lists])
    mean_ranks = np.array([np.mean(p) for p in rank_lists])
    out["mean_rank"] = mean_ranks.mean()
    out["median_rank"] = np.median(mean_ranks)
    lost = {"optimistic": greater, "pessimistic": greater + equal, "average": greater + equal / 2}
    out["two_way"] = np.mean((n_gallery - 1 - lost[ties]) / (n_gallery - 1))
    return {k: float(v) for k, v in out.items()}


def random_pair(n: int, d: int = N_F, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    stimuli = rng.standard_normal((n, d))
    brain = stimuli + 1.5 * rng.standard_normal((n, d))  # noisy: informative but imperfect
    return brain, stimuli


# ---------------------------------------------------------------------------------------------
# The streaming engine
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("query_chunk", [CHUNK, None])
def test_search_topk_equals_full_sort(backend, similarity, query_chunk):
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((N_Q, N_F)), rng.standard_normal((N_G, N_F))
    scores, indices = R.search_topk(
        q, g, 10, similarity=similarity, chunk_size=CHUNK, query_chunk_size=query_chunk,
        backend=backend,
    )  # fmt: skip
    sim = similarity_matrix(q, g, similarity)
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :10]
    assert indices.shape == (N_Q, 10)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(sim, expected, 1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [3, 16, 1000])
def test_search_topk_ties_broken_by_gallery_index(backend, chunk):
    # Integer-valued vectors: dot products are exact, and many tie across block boundaries.
    rng = np.random.default_rng(2)
    g = rng.integers(-1, 2, size=(N_G, 3)).astype(np.float64)
    q = rng.integers(-1, 2, size=(N_Q, 3)).astype(np.float64)
    scores, indices = R.search_topk(q, g, 7, similarity="dot", chunk_size=chunk, backend=backend)
    sim = q @ g.T
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(sim, expected, 1))


def test_search_topk_exercises_sparse_and_fallback_paths(monkeypatch):
    calls = {"sparse": 0, "dense": 0}
    sparse, dense = R._np_merge_sparse, R._np_merge_dense

    def count_sparse(*args):
        calls["sparse"] += 1
        return sparse(*args)

    def count_dense(*args):
        calls["dense"] += 1
        return dense(*args)

    monkeypatch.setattr(R, "_np_merge_sparse", count_sparse)
    monkeypatch.setattr(R, "_np_merge_dense", count_dense)
    rng = np.random.default_rng(3)
    # Random gallery: after the first block few items beat the running top-k (sparse merges);
    # then a block of items that all beat it (the dense fallback), then a remainder block.
    g = rng.standard_normal((3000, 8)).astype(np.float32)
    q = rng.standard_normal((50, 8)).astype(np.float32)
    g[2100:2300] = 10 * q[rng.integers(0, 50, 200)]
    _scores, indices = R.search_topk(q, g, 5, similarity="dot", chunk_size=200)
    sim = q.astype(np.float64) @ g.T.astype(np.float64)
    np.testing.assert_array_equal(indices, np.argsort(-sim, axis=1, kind="stable")[:, :5])
    assert calls["sparse"] > 0
    assert calls["dense"] > 1


def test_search_topk_float32_matches_float64_reference():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((N_Q, 64)).astype(np.float32)
    g = rng.standard_normal((2 * N_G + 3, 64)).astype(np.float32)
    scores, indices = R.search_topk(q, g, 10, chunk_size=CHUNK)
    assert scores.dtype == np.float32
    sim = similarity_matrix(q, g, "cosine")
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(sim, expected, 1), rtol=1e-5)


def test_search_topk_accepts_torch_memmap_and_float16(tmp_path, device):
    rng = np.random.default_rng(5)
    q, g = rng.standard_normal((N_Q, N_F)), rng.standard_normal((N_G, N_F))
    ref_s, ref_i = R.search_topk(q, g, 4, chunk_size=CHUNK)
    s_t, i_t = R.search_topk(torch.from_numpy(q).to(device), torch.from_numpy(g).to(device), 4)
    assert isinstance(s_t, np.ndarray)
    assert isinstance(i_t, np.ndarray)
    np.testing.assert_array_equal(i_t, ref_i)
    np.testing.assert_allclose(s_t, ref_s, atol=1e-12)
    path = tmp_path / "gallery.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=g.shape)
    mm[:] = g
    mm.flush()
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=g.shape)
    _s_m, i_m = R.search_topk(q, ro, 4, chunk_size=CHUNK)
    np.testing.assert_array_equal(i_m, ref_i)
    s_h, _ = R.search_topk(q.astype(np.float16), g.astype(np.float16), 4)
    assert s_h.dtype == np.float32


def test_search_topk_memory_is_bounded():
    rng = np.random.default_rng(6)
    q = rng.standard_normal((200, 16))
    g = rng.standard_normal((20_000, 16))
    tracemalloc.start()
    try:
        R.search_topk(q, g, 10, chunk_size=1000, query_chunk_size=100)
        R.ranks(q, g, rng.integers(0, len(g), len(q)), chunk_size=1000, query_chunk_size=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_matrix = 200 * 20_000 * 8  # 32 MB
    assert peak < full_matrix / 8, peak


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_ranks_equal_brute_force(backend, similarity):
    rng = np.random.default_rng(7)
    q, g = rng.standard_normal((N_Q, N_F)), rng.standard_normal((N_G, N_F))
    targets = rng.integers(0, N_G, N_Q)
    got = R.ranks(
        q, g, targets, similarity=similarity, chunk_size=CHUNK, query_chunk_size=CHUNK,
        backend=backend,
    )  # fmt: skip
    greater, equal = brute_counts(similarity_matrix(q, g, similarity), targets)
    assert equal.sum() == 0
    np.testing.assert_array_equal(got, 1.0 + greater)
    assert R.median_rank(q, g, targets, similarity=similarity) == float(np.median(1 + greater))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ties", TIES)
def test_tied_scores_follow_the_documented_rule(backend, ties):
    # {-1, 0, 1} vectors in 3-D: exact dot products, ties everywhere.
    rng = np.random.default_rng(8)
    q = rng.integers(-1, 2, size=(N_Q, 3)).astype(np.float64)
    g = rng.integers(-1, 2, size=(N_G, 3)).astype(np.float64)
    targets = rng.integers(0, N_G, N_Q)
    greater, equal = brute_counts(q @ g.T, targets)
    assert equal.sum() > 100  # the case is really about ties
    kw = {"similarity": "dot", "ties": ties, "chunk_size": CHUNK, "backend": backend}
    expected = brute_metrics(greater, equal, N_G, (1, 5, 10), ties)
    got_ranks = R.ranks(q, g, targets, **kw)
    exp_ranks = {"optimistic": 1 + greater, "pessimistic": 1 + greater + equal}
    np.testing.assert_allclose(got_ranks, exp_ranks.get(ties, 1 + greater + equal / 2))
    acc = R.topk_accuracy(q, g, targets, k=(1, 5, 10), **kw)
    for k in (1, 5, 10):
        assert acc[k] == pytest.approx(expected[f"top{k}"], abs=1e-12)
    assert R.mean_reciprocal_rank(q, g, targets, **kw) == pytest.approx(expected["mrr"], abs=1e-12)


def test_duplicate_gallery_rows_tie_in_float32():
    rng = np.random.default_rng(9)
    g = rng.standard_normal((N_G, 32)).astype(np.float32)
    g[50:60] = g[3]  # ten exact copies of the true item of query 0, in other blocks
    q = g[[3]] + 0.1 * rng.standard_normal((1, 32)).astype(np.float32)
    for chunk in (7, 16, None):
        r = R.ranks(q, g, [3], ties="pessimistic", chunk_size=chunk)
        assert r[0] == 11.0
        assert R.ranks(q, g, [3], ties="optimistic", chunk_size=chunk)[0] == 1.0


def test_constant_embeddings_give_chance_with_average_ties():
    n = 8
    brain, stimuli = np.ones((n, 7)), np.ones((n, 7))
    res = {t: R.retrieval_metrics(brain, stimuli, ks=(1, 5), ties=t, n_bootstrap=0) for t in TIES}
    for d in ("brain_to_stimulus", "stimulus_to_brain"):
        assert res["average"][d]["top1"] == pytest.approx(1 / n)
        assert res["average"][d]["top5"] == pytest.approx(5 / n)
        assert res["average"][d]["mean_rank"] == pytest.approx((n + 1) / 2)
        assert res["average"][d]["mrr"] == pytest.approx(sum(1 / r for r in range(1, n + 1)) / n)
        assert res["average"][d]["two_way"] == pytest.approx(0.5)
        assert res["optimistic"][d]["top1"] == 1.0
        assert res["pessimistic"][d]["top1"] == 0.0
        assert res["pessimistic"][d]["two_way"] == 0.0


# ---------------------------------------------------------------------------------------------
# Analytic cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["cosine", "correlation"])
def test_identical_embeddings_are_perfect(similarity):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((N_Q, N_F))
    res = R.retrieval_metrics(x, x.copy(), similarity=similarity, n_bootstrap=0)
    for d in ("brain_to_stimulus", "stimulus_to_brain"):
        m = res[d]
        assert (m["top1"], m["top5"], m["mrr"], m["median_rank"], m["two_way"]) == (1, 1, 1, 1, 1)
    assert R.two_way_identification(x, x, n_bootstrap=0)["brain_to_stimulus"]["two_way"] == 1.0
    assert R.n_way_retrieval(x, x, n_way=10, n_draws=3, n_bootstrap=0).metrics == {
        "brain_to_stimulus": {"top1": 1.0, "mrr": 1.0},
        "stimulus_to_brain": {"top1": 1.0, "mrr": 1.0},
    }


def test_antiparallel_embeddings_rank_last():
    n = 9
    stimuli = np.eye(n)  # orthonormal: every other item scores 0, the true one -1
    res = R.retrieval_metrics(-stimuli, stimuli, ks=(1, 8), n_bootstrap=0)
    for d in ("brain_to_stimulus", "stimulus_to_brain"):
        m = res[d]
        assert m["top1"] == 0.0
        assert m["top8"] == 0.0
        assert m["median_rank"] == n
        assert m["mean_rank"] == n
        assert m["mrr"] == pytest.approx(1 / n)
        assert m["two_way"] == 0.0


def test_known_ranks_on_a_line():
    # 1-D embeddings, dot product: gallery item j scores j for every query; query i's true item
    # is i, so the items above it are i + 1 … n - 1: rank n - i.
    n = 11
    queries, gallery = np.ones((n, 1)), np.arange(n, dtype=np.float64)[:, None]
    got = R.ranks(queries, gallery, similarity="dot", chunk_size=4)
    np.testing.assert_array_equal(got, n - np.arange(n))
    acc = R.topk_accuracy(queries, gallery, similarity="dot", k=(1, 3))
    assert acc == {1: 1 / n, 3: 3 / n}


# ---------------------------------------------------------------------------------------------
# Protocols against brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_retrieval_metrics_both_directions_equal_brute_force(backend, similarity):
    brain, stimuli = random_pair(N_Q, seed=11)
    res = R.retrieval_metrics(
        brain, stimuli, ks=(1, 5, 10), similarity=similarity, chunk_size=CHUNK,
        query_chunk_size=CHUNK, backend=backend, n_bootstrap=0,
    )  # fmt: skip
    sim = similarity_matrix(brain, stimuli, similarity)
    for d, matrix in (("brain_to_stimulus", sim), ("stimulus_to_brain", sim.T)):
        greater, equal = brute_counts(matrix, np.arange(N_Q))
        expected = brute_metrics(greater, equal, N_Q, (1, 5, 10), "average")
        for name, value in expected.items():
            assert res[d][name] == pytest.approx(value, abs=1e-12), (d, name)
        np.testing.assert_array_equal(res.ranks[d], 1 + greater)
    assert res.ci == {}


def _repetition_data(seed: int = 12):
    """37 brain samples of 15 stimuli (1 to 4 repetitions, shuffled), 20 stimuli in all."""
    rng = np.random.default_rng(seed)
    stimuli = rng.standard_normal((20, N_F))
    reps = np.r_[np.repeat(np.arange(15), 2), np.arange(7)]  # 15 × 2 + 7 = 37
    brain_rows = rng.permutation(reps)
    brain = stimuli[brain_rows] + 1.2 * rng.standard_normal((len(brain_rows), N_F))
    ids = np.array([f"img{i:03d}" for i in range(20)])
    return brain, stimuli, brain_rows, ids


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_repetitions_average_equals_brute_force(similarity):
    brain, stimuli, rows, ids = _repetition_data()
    res = R.retrieval_metrics(
        brain, stimuli, brain_ids=ids[rows], stimulus_ids=ids, similarity=similarity,
        repetitions="average", chunk_size=CHUNK, n_bootstrap=0,
    )  # fmt: skip
    items = np.unique(rows)
    averaged = np.stack([brain[rows == i].mean(axis=0) for i in items])
    # brain → stimulus: averaged responses against all 20 stimuli (5 are pure distractors)
    greater, equal = brute_counts(similarity_matrix(averaged, stimuli, similarity), items)
    expected = brute_metrics(greater, equal, 20, (1, 5, 10), "average")
    for name, value in expected.items():
        assert res["brain_to_stimulus"][name] == pytest.approx(value, abs=1e-12), name
    # stimulus → brain: the 15 stimuli with data against the 15 averages
    sim = similarity_matrix(stimuli[items], averaged, similarity)
    greater, equal = brute_counts(sim, np.arange(len(items)))
    expected = brute_metrics(greater, equal, len(items), (1, 5, 10), "average")
    for name, value in expected.items():
        assert res["stimulus_to_brain"][name] == pytest.approx(value, abs=1e-12), name
    assert res.n_queries == {"brain_to_stimulus": 15, "stimulus_to_brain": 15}
    assert res.n_gallery == {"brain_to_stimulus": 20, "stimulus_to_brain": 15}
    # Integer ids (rows of stimuli) give the same result.
    res_int = R.retrieval_metrics(
        brain, stimuli, brain_ids=rows, similarity=similarity, n_bootstrap=0
    )
    assert res_int.metrics == res.metrics


@pytest.mark.parametrize("repetitions", ["average", "per-sample"])
def test_torch_inputs_and_backend_give_the_numpy_result(repetitions, device):
    brain, stimuli, rows, _ = _repetition_data(seed=21)
    ref = R.retrieval_metrics(brain, stimuli, brain_ids=rows, repetitions=repetitions, seed=2)
    got = R.retrieval_metrics(
        torch.from_numpy(brain).to(device), torch.from_numpy(stimuli).to(device),
        brain_ids=torch.from_numpy(rows), repetitions=repetitions, backend="torch",
        chunk_size=CHUNK, seed=2,
    )  # fmt: skip
    for d in ref.metrics:
        for name, value in ref[d].items():
            assert got[d][name] == pytest.approx(value, abs=1e-12), (d, name)
            assert got.ci[d][name] == pytest.approx(ref.ci[d][name], abs=1e-12)


def test_repetitions_per_sample_equals_brute_force():
    brain, stimuli, rows, ids = _repetition_data()
    res = R.retrieval_metrics(
        brain, stimuli, brain_ids=ids[rows], stimulus_ids=ids, repetitions="per-sample",
        chunk_size=CHUNK, n_bootstrap=0,
    )  # fmt: skip
    # brain → stimulus: each of the 37 samples against the 20 stimuli
    greater, equal = brute_counts(similarity_matrix(brain, stimuli, "cosine"), rows)
    expected = brute_metrics(greater, equal, 20, (1, 5, 10), "average")
    for name, value in expected.items():
        assert res["brain_to_stimulus"][name] == pytest.approx(value, abs=1e-12), name
    # stimulus → brain: the r-th repetition of every stimulus forms the r-th gallery
    g_all, e_all, n_all = [], [], []
    for r in range(3):  # stimuli 0-6 have three samples, 7-14 two
        sel = [np.flatnonzero(rows == i)[r] for i in np.unique(rows) if np.sum(rows == i) > r]
        sel = np.sort(sel)
        sim = similarity_matrix(stimuli[rows[sel]], brain[sel], "cosine")
        greater, equal = brute_counts(sim, np.arange(len(sel)))
        g_all.append(greater)
        e_all.append(equal)
        n_all.append(np.full(len(sel), len(sel)))
    expected = brute_metrics(
        np.concatenate(g_all), np.concatenate(e_all), np.concatenate(n_all), (1, 5, 10), "average"
    )
    for name, value in expected.items():
        assert res["stimulus_to_brain"][name] == pytest.approx(value, abs=1e-12), name
    assert res.n_queries == {"brain_to_stimulus": 37, "stimulus_to_brain": 37}
    assert res.n_gallery == {"brain_to_stimulus": 20, "stimulus_to_brain": 15}
    with_ci = R.retrieval_metrics(
        brain, stimuli, brain_ids=rows, repetitions="per-sample", n_bootstrap=50
    )
    assert "bootstrap CI over stimuli (cluster bootstrap)" in str(with_ci)


def test_n_way_matches_mindeye_loop_on_recorded_draws():
    brain, stimuli = random_pair(60, seed=13)
    res = R.n_way_retrieval(brain, stimuli, n_way=12, n_draws=7, seed=3, n_bootstrap=0)
    assert res.subsets.shape == (7, 12)
    fwd, bwd = [], []
    for subset in res.subsets:
        assert len(np.unique(subset)) == 12  # without replacement within a draw
        sim = similarity_matrix(brain[subset], stimuli[subset], "cosine")
        fwd.append(np.mean(sim.argmax(axis=1) == np.arange(12)))
        bwd.append(np.mean(sim.T.argmax(axis=1) == np.arange(12)))
    assert res["brain_to_stimulus"]["top1"] == pytest.approx(np.mean(fwd), abs=1e-12)
    assert res["stimulus_to_brain"]["top1"] == pytest.approx(np.mean(bwd), abs=1e-12)
    np.testing.assert_allclose(res.per_draw["brain_to_stimulus"][:, 0], fwd, atol=1e-12)
    assert res.n_queries["brain_to_stimulus"] == 7 * 12
    # Same seed → same draws and values; another seed → other draws.
    again = R.n_way_retrieval(brain, stimuli, n_way=12, n_draws=7, seed=3, n_bootstrap=0)
    np.testing.assert_array_equal(again.subsets, res.subsets)
    other = R.n_way_retrieval(brain, stimuli, n_way=12, n_draws=7, seed=4, n_bootstrap=0)
    assert not np.array_equal(other.subsets, res.subsets)


def test_n_way_with_all_items_equals_full_retrieval():
    brain, stimuli = random_pair(N_Q, seed=14)
    full = R.retrieval_metrics(brain, stimuli, ks=(1, 3), n_bootstrap=0)
    nway = R.n_way_retrieval(brain, stimuli, n_way=N_Q, n_draws=30, ks=(1, 3), n_bootstrap=0)
    for d in nway.metrics:
        for name in ("top1", "top3", "mrr"):
            assert nway[d][name] == pytest.approx(full[d][name], abs=1e-12)
    assert nway.per_draw["brain_to_stimulus"].shape == (30, 3)


def test_n_way_chance_level_with_random_embeddings():
    rng = np.random.default_rng(15)
    brain, stimuli = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    res = R.n_way_retrieval(brain, stimuli, n_way=10, n_draws=100, seed=0, n_bootstrap=200)
    n = 100 * 10
    tolerance = 4 * np.sqrt(0.1 * 0.9 / n)  # binomial, 4 standard deviations
    for d in res.metrics:
        assert abs(res[d]["top1"] - 0.1) < tolerance, res[d]
        low, high = res.ci[d]["top1"]
        assert low <= res[d]["top1"] <= high


def _mindeye_two_way(preds: np.ndarray, reals: np.ndarray) -> float:
    """MindEye/Ozcelik 2-way identification, naive: Pearson r between all pairs, and for each
    prediction the share of other real items whose r with it is lower than the true item's."""
    n = len(reals)
    scores = []
    for j in range(n):  # prediction j, true item j
        r_true = np.corrcoef(reals[j], preds[j])[0, 1]
        lower = sum(np.corrcoef(reals[i], preds[j])[0, 1] < r_true for i in range(n) if i != j)
        scores.append(lower / (n - 1))
    return float(np.mean(scores))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_way_identification_equals_mindeye_definition(backend):
    preds, reals = random_pair(N_Q, d=20, seed=16)
    res = R.two_way_identification(
        preds, reals, ties="pessimistic", chunk_size=CHUNK, backend=backend
    )
    expected = _mindeye_two_way(preds, reals)
    assert res["brain_to_stimulus"]["two_way"] == pytest.approx(expected, abs=1e-12)
    low, high = res.ci["brain_to_stimulus"]["two_way"]
    assert low <= expected <= high
    both = R.two_way_identification(preds, reals, direction="both", n_bootstrap=0)
    assert both["stimulus_to_brain"]["two_way"] == pytest.approx(
        _mindeye_two_way(reals, preds), abs=1e-12
    )


def test_full_gallery_retrieval_deduplicates_segments():
    rng = np.random.default_rng(17)
    segments = rng.standard_normal((25, N_F))
    seg_of_window = np.r_[np.arange(25), rng.integers(0, 25, 12)]  # 37 windows, 12 repeats
    stimuli = segments[seg_of_window]
    brain = stimuli + 1.5 * rng.standard_normal(stimuli.shape)
    res = R.full_gallery_retrieval(
        brain, stimuli, ks=(1, 10), stimulus_ids=seg_of_window, chunk_size=CHUNK, n_bootstrap=50
    )
    greater, equal = brute_counts(similarity_matrix(brain, segments, "cosine"), seg_of_window)
    expected = brute_metrics(greater, equal, 25, (1, 10), "average")
    for name in ("top1", "top10", "mrr", "mean_rank", "median_rank"):
        assert res["brain_to_stimulus"][name] == pytest.approx(expected[name], abs=1e-12)
    assert res.n_gallery["brain_to_stimulus"] == 25
    assert res.n_queries["brain_to_stimulus"] == 37
    assert "stimuli (cluster bootstrap)" in str(res)
    stimuli_noisy = stimuli.copy()
    stimuli_noisy[30] += 1.0  # a repeated window whose stimulus embedding differs
    with pytest.warns(BrainAlignWarning, match="first window of each id"):
        R.full_gallery_retrieval(brain, stimuli_noisy, stimulus_ids=seg_of_window, n_bootstrap=0)


def test_accuracy_vs_gallery_size_curve():
    brain, stimuli = random_pair(40, seed=18)
    curve = R.accuracy_vs_gallery_size(brain, stimuli, (2, 10, 40), k=1, n_draws=8, n_bootstrap=50)
    np.testing.assert_array_equal(curve.gallery_sizes, [2, 10, 40])
    np.testing.assert_allclose(curve.chance, [0.5, 0.1, 0.025])
    full = R.retrieval_metrics(brain, stimuli, ks=(1,), n_bootstrap=0)
    for d in ("brain_to_stimulus", "stimulus_to_brain"):
        assert curve.accuracy[d][-1] == pytest.approx(full[d]["top1"], abs=1e-12)
        assert np.all(curve.ci_low[d] <= curve.accuracy[d])
        assert np.all(curve.accuracy[d] <= curve.ci_high[d])
        assert curve.accuracy[d][0] > curve.accuracy[d][-1]  # fewer candidates, easier
    frame = curve.to_frame()
    assert list(frame.columns) == [
        "direction", "gallery_size", "k", "accuracy", "ci_low", "ci_high", "chance",
    ]  # fmt: skip
    assert len(frame) == 6
    assert "N " in str(curve)
    assert "brain → stimulus" in str(curve)
    default = R.accuracy_vs_gallery_size(brain, stimuli, n_draws=2, n_bootstrap=0)
    np.testing.assert_array_equal(default.gallery_sizes, [2, 5, 10, 20, 40])


def test_result_table_frame_and_dict():
    brain, stimuli = random_pair(N_Q, seed=19)
    res = R.retrieval_metrics(brain, stimuli, ks=(1, 5), n_bootstrap=100, seed=1)
    text = str(res)
    for token in ("brain → stimulus", "stimulus → brain", "top1", "top5", "mrr", "95%"):
        assert token in text
    frame = res.to_frame()
    assert len(frame) == 2 * 6
    row = frame[(frame.direction == "stimulus_to_brain") & (frame.metric == "mrr")].iloc[0]
    assert row.value == res["stimulus_to_brain"]["mrr"]
    assert (row.ci_low, row.ci_high) == res.ci["stimulus_to_brain"]["mrr"]
    wide = frame.pivot(index="direction", columns="metric", values="value")
    assert wide.loc["brain_to_stimulus", "top1"] == res["brain_to_stimulus"]["top1"]
    json.dumps(res.to_dict())
    assert "top1=" in repr(res)
    for d in res.directions:
        for name, value in res[d].items():
            low, high = res.ci[d][name]
            assert low <= value <= high, (d, name)


def test_bootstrap_in_results_is_seeded():
    brain, stimuli = random_pair(N_Q, seed=20)
    a = R.retrieval_metrics(brain, stimuli, n_bootstrap=200, seed=5)
    b = R.retrieval_metrics(brain, stimuli, n_bootstrap=200, seed=5)
    c = R.retrieval_metrics(brain, stimuli, n_bootstrap=200, seed=6)
    assert a.ci == b.ci
    assert a.ci != c.ci
    assert a.metrics == c.metrics


def test_import_stays_light():
    code = (
        "import sys, brainalign.evaluate.retrieval; "
        "print(sorted(m for m in ('pandas', 'scipy', 'mne', 'matplotlib', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Bad input: the message names the parameter, the value and the fix
# ---------------------------------------------------------------------------------------------


def test_mismatched_feature_dimensions():
    with pytest.raises(ValueError, match=r"'brain' has 8 features per row but 'stimuli' has 9"):
        R.retrieval_metrics(np.ones((7, 8)), np.ones((7, 9)))
    with pytest.raises(ValueError, match=r"'queries' has 8 features .* common dimension"):
        R.search_topk(np.ones((7, 8)), np.ones((10, 9)), 3)


def test_k_larger_than_gallery():
    q, g = np.eye(9)[:7], np.eye(9)
    with pytest.raises(
        ValueError, match=r"k=10 is larger than the gallery \(9 items\); use k <= 9"
    ):
        R.search_topk(q, g, 10)
    with pytest.raises(ValueError, match=r"k=12 is larger than .* use k <= 9"):
        R.topk_accuracy(q, g, k=(1, 12))
    with pytest.raises(ValueError, match=r"k=20 is larger than the N-way gallery"):
        R.n_way_retrieval(g, g, n_way=5, ks=(1, 20))
    with pytest.raises(ValueError, match=r"'k' must be at least 1, got 0"):
        R.search_topk(q, g, 0)


def test_n_way_larger_than_items():
    x = np.random.default_rng(0).standard_normal((9, 8))
    with pytest.raises(ValueError, match=r"n_way=300 is larger than the number of test items \(9"):
        R.n_way_retrieval(x, x)
    with pytest.raises(ValueError, match=r"'n_way' must be at least 2, got 1"):
        R.n_way_retrieval(x, x, n_way=1)
    with pytest.raises(ValueError, match=r"'n_draws' must be at least 1, got 0"):
        R.n_way_retrieval(x, x, n_way=3, n_draws=0)
    with pytest.raises(ValueError, match=r"'gallery_sizes' has \[20\] larger .* \(9\)"):
        R.accuracy_vs_gallery_size(x, x, (2, 20))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"similarity": "cosin"}, ValueError, r"'similarity' parameter.*Did you mean 'cosine'"),
        ({"ties": "random"}, ValueError, r"'ties' parameter. Allowed values are 'average'"),
        ({"direction": "forward"}, ValueError, r"'direction' parameter"),
        ({"repetitions": "mean"}, ValueError, r"'repetitions' parameter"),
        ({"backend": "cupy"}, ValueError, r"'backend' parameter"),
        ({"chunk_size": 0}, ValueError, r"'chunk_size' must be at least 1, got 0"),
        ({"ci": 1.5}, ValueError, r"'ci' must be a coverage strictly between 0 and 1"),
        ({"n_bootstrap": -1}, ValueError, r"'n_bootstrap' must be at least 1, got -1"),
        ({"ks": ()}, ValueError, r"'ks' is empty"),
        ({"brain_ids": np.arange(7) + 5}, ValueError, r"'brain_ids' must be rows of 'stimuli'"),
        ({"stimulus_ids": np.arange(7)}, ValueError, r"'stimulus_ids' was given without"),
    ],
)
def test_invalid_options(kwargs, error, message):
    x = np.random.default_rng(0).standard_normal((7, 8))
    with pytest.raises(error, match=message):
        R.retrieval_metrics(x, x.copy(), **kwargs)


def test_bad_pairing_and_ids():
    rng = np.random.default_rng(0)
    brain, stimuli = rng.standard_normal((7, 8)), rng.standard_normal((9, 8))
    with pytest.raises(ValueError, match=r"'brain' has 7 rows but 'stimuli' has 9.*brain_ids"):
        R.retrieval_metrics(brain, stimuli)
    ids = np.array(list("abcdefghi"))
    with pytest.raises(ValueError, match=r"'brain_ids' contains ids absent .*\['z'\]"):
        R.retrieval_metrics(brain, stimuli, brain_ids=list("abcdefz"), stimulus_ids=ids)
    with pytest.raises(ValueError, match=r"'stimulus_ids' must be unique.*\['a'\]"):
        R.retrieval_metrics(
            brain, stimuli, brain_ids=list("abcdefg"), stimulus_ids=list("aacdefghi")
        )
    with pytest.raises(ValueError, match=r"'brain_ids' must have one id per row of 'brain'"):
        R.retrieval_metrics(brain, stimuli, brain_ids=[0, 1], stimulus_ids=ids)
    with pytest.raises(ValueError, match=r"'targets' must be gallery row indices in \[0, 9\)"):
        R.ranks(brain, stimuli, [0, 1, 2, 3, 4, 5, 9])
    with pytest.raises(ValueError, match=r"there are 9 queries and only 7 gallery rows"):
        R.ranks(stimuli, brain)
    with pytest.raises(ValueError, match=r"full_gallery_retrieval takes paired windows"):
        R.full_gallery_retrieval(brain, stimuli)


def test_bad_arrays():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 8))
    with pytest.raises(ValueError, match=r"'brain' must be a 2-D array .* got shape \(7, 8, 9\)"):
        R.retrieval_metrics(np.ones((7, 8, 9)), x)
    with pytest.raises(ValueError, match=r"'stimuli' is empty"):
        R.retrieval_metrics(x, x[:0])
    with pytest.raises(TypeError, match=r"'queries' must hold real numbers"):
        R.search_topk(x.astype(complex), x, 2)
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"'gallery' rows \[4\] contain NaN or infinite values"):
        R.search_topk(x, bad, 2, chunk_size=3)
    with pytest.raises(ValueError, match=r"'queries' rows \[4\] contain NaN"):
        R.search_topk(bad, x, 2)
    zero = x.copy()
    zero[5] = 0
    with pytest.raises(ValueError, match=r"'gallery' rows \[5\] have zero norm.*similarity='dot'"):
        R.search_topk(x, zero, 2, chunk_size=4)
    with pytest.raises(ValueError, match=r"'brain' rows \[5\] have zero norm"):
        R.retrieval_metrics(zero, x, ks=1, direction="brain_to_stimulus", n_bootstrap=0)
    with pytest.raises(ValueError, match=r"needs at least 2 candidates per query"):
        R.two_way_identification(x[:1], x[:1])

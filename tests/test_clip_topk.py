"""Exact chunked top-k against a full argsort, tie order, dedup and the overlap report."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.clip.report import build_report, select, zutis_labels
from datakit.clip.topk import SearchOptions, exact_topk, merge_topk, search
from datakit.errors import InputError


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(q: np.ndarray, x16: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """ZUTIS's way: all scores, full sort (ties by lower row via a stable lexsort)."""
    s = q.astype(np.float64) @ x16.astype(np.float64).T
    order = np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("block_rows,sub_rows", [(0, 0), (700, 128), (5000, 999)])
def test_exact_topk_matches_full_sort(backend: str, block_rows: int, sub_rows: int) -> None:
    rng = np.random.default_rng(0)
    x = _unit(rng, 6000, 48).astype(np.float16)
    q = _unit(rng, 9, 48)
    parts = [x[:2500], x[2500:2501], x[2501:4000], x[4000:]]  # uneven parts, one of a single row
    got = exact_topk(q, parts, 300, SearchOptions(backend=backend, block_rows=block_rows, sub_rows=sub_rows))
    ref_s, ref_r = _reference(q, x, 300)
    assert got.rows.shape == (9, 300) and got.scores.dtype == np.float32
    np.testing.assert_allclose(got.scores, ref_s, atol=1e-5)
    for c in range(9):  # sets equal; order equal wherever neighbouring scores are separated
        assert set(got.rows[c]) == set(ref_r[c])
    assert (np.diff(got.scores, axis=1) <= 0).all()
    assert np.array_equal(got.rows[:, :250], ref_r[:, :250])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ties_go_to_the_lower_row(backend: str) -> None:
    # integer-valued vectors: every product is exact, so equal scores are truly equal
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(3000, 16)).astype(np.float16)
    x[1000:1400] = x[7]  # 401 identical rows -> a tie that straddles the top-k boundary
    q = np.zeros((2, 16), np.float32)
    q[0] = x[7]
    q[1, 0] = 1.0  # only the first coordinate: massive ties everywhere
    got = exact_topk(q, [x[:1200], x[1200:]], 150, SearchOptions(backend=backend, block_rows=512, sub_rows=100))
    s = q @ x.astype(np.float32).T
    for c in range(2):
        order = np.lexsort((np.arange(x.shape[0]), -s[c]))[:150]
        assert got.rows[c].tolist() == order.tolist()
    twins = got.rows[0][got.scores[0] == got.scores[0][0]]
    assert twins.tolist() == sorted(twins.tolist())


@pytest.mark.parametrize("block_rows", [0, 700])
def test_resident_torch_parts_give_the_numpy_result(block_rows: int) -> None:
    """The GPU-resident path on CPU tensors: fp16 torch parts, scored where they live, equal the numpy path."""
    torch = pytest.importorskip("torch")
    from datakit.clip.topk import resident

    rng = np.random.default_rng(3)
    x = _unit(rng, 5000, 40).astype(np.float16)
    q = _unit(rng, 7, 40)
    parts = [x[:1800], x[1800:1801], x[1801:]]
    on = resident(parts, "cpu")
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.float16 for p in on)
    done: list[int] = []
    got = exact_topk(q, on, 250, SearchOptions(block_rows=block_rows, sub_rows=300), advance=done.append)
    ref = exact_topk(q, parts, 250, SearchOptions(backend="numpy"))
    np.testing.assert_array_equal(got.rows, ref.rows)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-6)
    assert sum(done) == 5000  # progress counts every row once

    class Elsewhere:  # a tensor on another device (only its shape and device are looked at before the refusal)
        __module__ = "torch"
        shape, device = on[0].shape, "cuda:7"

    with pytest.raises(InputError, match="torch backend"):
        exact_topk(q, [on[0], Elsewhere()], 5)


def test_k_larger_than_pool_and_empty_parts() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng, 40, 8).astype(np.float16)
    q = _unit(rng, 3, 8)
    got = exact_topk(q, [x[:0], x, x[:0]], 500)
    assert got.rows.shape == (3, 40)
    assert all(sorted(r) == list(range(40)) for r in got.rows.tolist())
    none = exact_topk(q, [x[:0]], 10)
    assert none.rows.shape == (3, 0)


def test_dimension_mismatch_is_an_input_error() -> None:
    with pytest.raises(InputError):
        exact_topk(np.zeros((2, 8), np.float32), [np.zeros((5, 9), np.float16)], 3)
    with pytest.raises(InputError):
        search(np.zeros((2, 8), np.float32), [np.zeros((5, 8), np.float16)], 3, SearchOptions(method="annoy"))


def test_merge_topk_orders_by_score_then_row() -> None:
    s = np.array([[0.5, 0.9, 0.5, 0.1]], np.float32)
    r = np.array([[7, 3, 2, 1]])
    ms, mr = merge_topk(s, r, 3)
    assert mr.tolist() == [[3, 2, 7]] and ms.tolist() == [[pytest.approx(0.9), 0.5, 0.5]]


def test_dedup_none_keeps_zutis_lists_and_last_label() -> None:
    scores = np.array([[0.9, 0.8, 0.7], [0.95, 0.6, 0.5]], np.float32)
    rows = np.array([[10, 11, 12], [11, 13, 14]])
    sel = select(scores, rows, 2, "none")
    assert [r.tolist() for r in sel.rows] == [[10, 11], [11, 13]]
    assert zutis_labels(sel)[11] == 2  # the last category that retrieved it
    rep = build_report(["a", "b"], sel, ["imagenet"] * 4, 2, "none")
    assert rep["images_in_several_categories"] == 1 and rep["unique_images"] == 3
    assert rep["top_shared_pairs"] == [{"a": "a", "b": "b", "images": 1}]
    assert rep["zutis_last_label_not_best"] == 0  # 11 scores 0.95 in b, which is also the last
    assert rep["per_category"][0]["scores"]["max"] == pytest.approx(0.9)


def test_dedup_best_gives_each_image_one_category_and_refills() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.95, 0.85, 0.5, 0.4]], np.float32)
    rows = np.array([[10, 11, 12, 13], [11, 10, 14, 15]])
    sel = select(scores, rows, 2, "best")
    assert [r.tolist() for r in sel.rows] == [[10, 12], [11, 14]]
    listed = np.concatenate(sel.rows)
    assert len(set(listed.tolist())) == len(listed)
    with pytest.raises(InputError):
        select(scores, rows, 2, "maybe")


def test_report_flags_when_zutis_label_is_not_the_best() -> None:
    scores = np.array([[0.9, 0.1], [0.3, 0.2]], np.float32)
    rows = np.array([[5, 6], [5, 7]])
    rep = build_report(["a", "b"], select(scores, rows, 2, "none"), ["pass"] * 4, 2, "none")
    assert rep["zutis_last_label_not_best"] == 1  # 5 is best in a (0.9) but ZUTIS labels it b


def test_faiss_flat_agrees_with_exact() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    x = _unit(rng, 3000, 32).astype(np.float16)
    q = _unit(rng, 4, 32)
    a = search(q, [x], 50, SearchOptions(method="faiss-flat"))
    b = exact_topk(q, [x], 50)
    for c in range(4):
        assert set(a.rows[c]) == set(b.rows[c])


def test_faiss_ivf_is_approximate_but_exhaustive_with_all_probes() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(4)
    x = _unit(rng, 4000, 16).astype(np.float16)
    q = _unit(rng, 3, 16)
    exact = exact_topk(q, [x[:1000], x[1000:]], 20)
    approx = search(q, [x[:1000], x[1000:]], 20, SearchOptions(method="faiss-ivf", nprobe=10_000))
    assert approx.rows.shape == (3, 20)
    for c in range(3):
        assert set(approx.rows[c]) == set(exact.rows[c])
        np.testing.assert_allclose(approx.scores[c], q[c] @ x[approx.rows[c]].astype(np.float32).T, atol=1e-4)

"""Batching: results never depend on how rows are chunked; chunk counts follow the settings."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

import seethrough as st
from seethrough._core.batching import Batching, as_batching
from seethrough.testing import TinyCNN, TinyResNet, seeded

B = 3


@pytest.fixture
def x():
    return torch.randn(B, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@contextmanager
def count_calls(model):
    """Record the batch size of every call of ``model`` (root forward pre-hook)."""
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()
    assert not model._forward_pre_hooks


def make(method, model, batching, seed=0):
    if method == "saliency":
        return st.Saliency(model, abs=False, batching=batching)
    if method == "integrated_gradients":
        return st.IntegratedGradients(model, steps=16, batching=batching)
    if method == "smoothgrad":
        return st.SmoothGrad(model, n_samples=8, seed=seed, batching=batching)
    raise AssertionError(method)


ROWS = {"saliency": B, "integrated_gradients": B * 16, "smoothgrad": B * 8}
# model calls besides the chunks: integrated gradients scores the inputs and the baseline
EXTRA = {"saliency": 0, "integrated_gradients": 2, "smoothgrad": 0}
# model calls a predicted target adds: none where the method's forward pass is the clean pass
EXTRA_PREDICTED = {"saliency": 0, "integrated_gradients": 1, "smoothgrad": 1}

BATCHINGS = {
    "1": 1,
    "3": 3,
    "7": Batching(batch_size=7),
    "auto": None,
    "tiny_budget": Batching(memory_budget=1),
    "small_budget": Batching(memory_budget=40_000),
}


@pytest.mark.parametrize("model_cls", [TinyCNN, TinyResNet])
@pytest.mark.parametrize("method", list(ROWS))
def test_results_do_not_depend_on_batching(method, model_cls, x):
    model = seeded(model_cls)
    results = {k: make(method, model, b).attribute(x, target=[0, 2, 4]) for k, b in BATCHINGS.items()}
    ref = results["auto"]
    for key, expl in results.items():
        torch.testing.assert_close(
            expl.attributions, ref.attributions, rtol=1e-6, atol=1e-6, msg=lambda m: f"{key}: {m}"
        )
        if expl.scores is not None:
            torch.testing.assert_close(expl.scores, ref.scores, rtol=1e-6, atol=1e-6)
    if method == "integrated_gradients":
        for expl in results.values():
            torch.testing.assert_close(expl.delta, ref.delta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 5, 7, 48, 100])
@pytest.mark.parametrize("method", list(ROWS))
def test_explicit_batch_size_gives_ceil_rows_over_size_calls(method, size, x):
    model = seeded(TinyCNN)
    rows = ROWS[method]
    with count_calls(model) as sizes:
        expl = make(method, model, size).attribute(x, target=1)
    chunk_calls = sizes[: len(sizes) - EXTRA[method]]
    assert len(chunk_calls) == math.ceil(rows / size)
    assert sum(chunk_calls) == rows
    assert max(chunk_calls) <= size
    assert expl.n_evaluations == rows + EXTRA[method] * B
    # a predicted target needs the clean output: a single-pass input method (saliency) reads
    # it from its own forward pass, the same calls as for a given class; the others run one
    # more, clean, forward pass of all B samples
    with count_calls(model) as sizes_pred:
        pred = make(method, model, size).attribute(x, target=None)
    extra = EXTRA_PREDICTED[method]
    assert len(sizes_pred) == len(sizes) + extra
    assert sorted(sizes_pred) == sorted(sizes + [B] * extra)
    assert pred.n_evaluations == expl.n_evaluations + extra * B


@pytest.mark.parametrize("method", list(ROWS))
def test_automatic_sizing_adds_at_most_one_probe_call(method, x):
    model = seeded(TinyCNN)
    rows = ROWS[method]
    with count_calls(model) as first:
        make(method, model, None).attribute(x, target=1)
    chunk_calls = first[: len(first) - EXTRA[method]]
    # default budget: all rows of these tiny models fit in one chunk, after one probe row
    assert chunk_calls in ([1, rows], [rows])
    with count_calls(model) as second:
        make(method, model, None).attribute(x, target=1)
    assert len(second) <= len(first)
    assert second[: len(second) - EXTRA[method]] == [rows]  # the probe is measured once per model


@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "integrated_gradients"])
def test_smaller_memory_budget_gives_more_calls(method, x):
    counts = []
    for budget in (1 << 30, 400_000, 40_000, 1):
        model = seeded(TinyCNN)  # fresh model: every budget pays the same probe
        with count_calls(model) as sizes:
            make(method, model, Batching(memory_budget=budget)).attribute(x, target=1)
        counts.append(len(sizes))
    assert counts == sorted(counts)
    assert counts[0] < counts[-1]
    assert counts[-1] == ROWS[method] + 1 + EXTRA[method]  # one row per call, plus the probe


def test_cpu_working_set_caps_automatic_chunks(x):
    model = seeded(TinyCNN)
    with count_calls(model) as big:
        make("smoothgrad", model, Batching(cpu_working_set=1 << 30)).attribute(x, target=1)
    with count_calls(model) as small:
        make("smoothgrad", model, Batching(cpu_working_set=1)).attribute(x, target=1)
    assert len(small) > len(big)
    assert set(small) == {1}


def test_max_rows_caps_automatic_chunks(x):
    model = seeded(TinyCNN)
    with count_calls(model) as sizes:
        make("integrated_gradients", model, Batching(max_rows=5)).attribute(x, target=1)
    chunk_calls = sizes[1:-2]  # probe first, clean and baseline scores last
    assert sizes[0] == 1
    assert max(chunk_calls) <= 5 and sum(chunk_calls) == ROWS["integrated_gradients"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": -1},
        {"batch_size": 2.5},
        {"batch_size": "4"},
        {"memory_budget": 0},
        {"memory_budget": -5},
    ],
)
def test_invalid_batching_settings(kwargs):
    with pytest.raises(st.ConfigError, match=next(iter(kwargs))):
        Batching(**kwargs)


def test_as_batching():
    assert as_batching(None) == Batching()
    assert as_batching(4) == Batching(batch_size=4)
    b = Batching(memory_budget=10)
    assert as_batching(b) is b
    for bad in (True, 2.0, "4"):
        with pytest.raises(st.ConfigError):
            as_batching(bad)
    with pytest.raises(st.ConfigError):
        as_batching(0)


def test_batching_is_frozen():
    b = Batching(batch_size=3)
    with pytest.raises(AttributeError):
        b.batch_size = 4  # type: ignore[misc]


def test_rows_per_chunk():
    cpu = torch.device("cpu")
    assert Batching(batch_size=9).rows_per_chunk(10**9, cpu) == 9
    assert Batching(memory_budget=1000, cpu_working_set=10**9).rows_per_chunk(100, cpu) == 10
    assert Batching(memory_budget=10**9, cpu_working_set=1000).rows_per_chunk(100, cpu) == 10
    assert Batching(memory_budget=10).rows_per_chunk(100, cpu) == 1  # never zero
    assert Batching(max_rows=4).rows_per_chunk(1, cpu) == 4
    assert Batching().rows_per_chunk(0, cpu) == 512


@pytest.mark.parametrize("n", [1, 2, 7, 10, 13, 48, 100])
@pytest.mark.parametrize("size", [1, 3, 4, 7, 64])
def test_chunks_cover_rows_in_ceil_n_over_size_slices(n, size):
    chunks = list(Batching.chunks(n, size))
    assert len(chunks) == math.ceil(n / size)
    assert chunks[0].start == 0 and chunks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    assert all(0 < c.stop - c.start <= size for c in chunks)
    assert list(Batching.chunks(0, size)) == []


@pytest.mark.parametrize("n,size", [(7, 3), (13, 4)])
def test_chunks_are_sized_evenly(n, size):
    sizes = [c.stop - c.start for c in Batching.chunks(n, size)]
    assert max(sizes) - min(sizes) <= 1


def test_smoothgrad_seed(x):
    model = seeded(TinyCNN)
    a = make("smoothgrad", model, 5, seed=3).attribute(x, target=1).attributions
    b = make("smoothgrad", model, 2, seed=3).attribute(x, target=1).attributions
    c = make("smoothgrad", model, 5, seed=4).attribute(x, target=1).attributions
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-4)
    # the noise does not depend on the global RNG
    torch.manual_seed(123)
    d = make("smoothgrad", model, 5, seed=3).attribute(x, target=1).attributions
    torch.testing.assert_close(a, d, rtol=0, atol=0)


def test_smoothgrad_wrapping_non_gradient_method_does_not_depend_on_batching(x):
    model = seeded(TinyCNN)
    inner = st.IntegratedGradients(model, steps=4)
    results = [
        st.SmoothGrad(model, method=inner, n_samples=3, batching=b).attribute(x, target=1).attributions
        for b in (1, None)
    ]
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-6)

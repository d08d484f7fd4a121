"""Cross-check of the model parameter randomization test against Quantus's MPRT.

Quantus re-initialises every module that has ``reset_parameters()`` in ``named_modules()``
order (reversed for ``layer_order="top_down"``), seeding the global torch RNG with
``seed + 1`` before each layer. Ours seeds each layer from the seed and the layer's name
(so a layer gets the same weights in both modes) and orders layers by forward execution.
On a model whose registration order is its execution order, with our per-layer seed
patched to Quantus's ``seed + 1``, both produce the same randomized models, so the
per-layer Spearman correlations must agree to rounding. Quantus's SSIM (uniform 7x7 window,
data range from the two maps) is another definition than ours (Gaussian window on
min-max-normalised maps, checked against scikit-image in test_similarity.py), so it is not
compared here.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import pytest
import torch

quantus = pytest.importorskip("quantus", reason="quantus is a test-only dependency; not installed")

from seethrough.attribution import Saliency  # noqa: E402
from seethrough.evaluation import _randomize  # noqa: E402
from seethrough.evaluation.randomization import ModelRandomizationCheck  # noqa: E402
from seethrough.testing import TinyCNN, seeded  # noqa: E402

SEED = 42


def _explain(model, inputs, targets, **kwargs):
    """Quantus explain_func: our Saliency (signed gradient), channels summed, (N, 1, H, W)."""
    x = torch.as_tensor(inputs, dtype=torch.float32)
    a = Saliency(model, abs=False).attribute(x, target=torch.as_tensor(targets).long()).attributions
    return a.sum(dim=1, keepdim=True).detach().numpy()


def _quantus_scores(model, x, y, a_batch, *, order, abs_):
    os.environ.setdefault("PYTEST", "1")
    metric = quantus.MPRT(
        similarity_func=quantus.similarity_func.correlation_spearman,
        layer_order=order,
        seed=SEED,
        abs=abs_,
        normalise=False,
        disable_warnings=True,
        display_progressbar=False,
    )
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a_batch,
            explain_func=_explain,
            channel_first=True,
            device="cpu",
            batch_size=16,
        )


@pytest.fixture
def quantus_seed(monkeypatch):
    monkeypatch.setattr(_randomize, "_layer_seed", lambda seed, name: seed + 1)


def _setup():
    model = seeded(TinyCNN, seed=3)
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    a = _explain(model, x.numpy(), y.numpy())
    return model, x, y, a


@pytest.mark.parametrize("order,mode", [("top_down", "cascading"), ("independent", "independent")])
def test_spearman_curves_equal_quantus_mprt(quantus_seed, order, mode):
    model, x, y, a = _setup()
    ours = ModelRandomizationCheck(
        lambda m: Saliency(m, abs=False), mode=mode, similarity=("spearman", "spearman_abs"), seed=SEED
    ).run(model, x)
    assert torch.equal(ours.target_indices, y)
    for measure, abs_ in (("spearman", False), ("spearman_abs", True)):
        q = _quantus_scores(model, x, y, np.abs(a) if abs_ else a, order=order, abs_=abs_)
        assert np.allclose(q.pop("original"), 1.0)
        # same layers (Quantus lists independent layers bottom-up; we go top-down in both modes)
        expected_order = list(q) if order == "top_down" else list(reversed(list(q)))
        assert list(ours.stages) == expected_order
        for i, layer in enumerate(ours.stages):
            np.testing.assert_allclose(
                ours.similarity[measure][i].numpy(),
                np.asarray(q[layer]),
                rtol=0,
                atol=1e-6,
                err_msg=f"{measure} after randomizing {layer}",
            )


def test_without_the_patch_the_seeding_differs_but_the_layers_do_not():
    """Our own seeding (per layer name) gives other random weights than Quantus's, so only
    the layer order and the first stage's structure agree: a guard that the patch above is
    what makes the numbers equal, not a coincidence."""
    model, x, y, a = _setup()
    ours = ModelRandomizationCheck(lambda m: Saliency(m, abs=False), similarity=("spearman",), seed=SEED).run(model, x)
    q = _quantus_scores(model, x, y, a, order="top_down", abs_=False)
    q.pop("original")
    assert list(ours.stages) == list(q)
    assert not np.allclose(ours.similarity["spearman"][-1].numpy(), np.asarray(q[ours.stages[-1]]), atol=1e-6)


def test_similarity_functions_equal_quantus():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 12 * 12))
    b = a + rng.normal(size=a.shape)
    b[0] = np.round(b[0])  # ties
    from seethrough.evaluation.similarity import pearson, spearman

    np.testing.assert_allclose(
        spearman(a, b).numpy(), quantus.similarity_func.correlation_spearman(a, b, batched=True), atol=1e-12
    )
    np.testing.assert_allclose(
        pearson(a, b).numpy(), quantus.similarity_func.correlation_pearson(a, b, batched=True), atol=1e-12
    )

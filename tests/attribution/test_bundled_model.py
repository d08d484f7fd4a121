"""Axioms and ground truth on the bundled shapes model."""

from __future__ import annotations

import pytest

import seethrough as st

zoo = pytest.importorskip("seethrough.zoo")
pytestmark = pytest.mark.skipif("shapes-cnn" not in zoo.available(), reason="bundled weights missing")


@pytest.fixture(scope="module")
def model():
    return zoo.load("shapes-cnn")


@pytest.fixture(scope="module")
def data():
    return st.data.make_shapes(8, seed=4242)


def test_completeness_with_64_gauss_legendre_steps(model, data):
    """The issue's bar: |delta| under 1% of |F(x) - F(x')| with 64 Gauss-Legendre steps."""
    e = st.IntegratedGradients(model, steps=64, rule="gausslegendre").attribute(data.images, target=None)
    gap = (e.scores - e.extras["baseline_scores"]).abs()
    rel = e.delta.abs() / gap
    assert bool((rel < 0.01).all()), rel.tolist()


def test_gradcam_points_at_the_object_more_than_chance(model, data):
    """Grad-CAM's mass inside the evidence mask exceeds the object's area fraction."""
    layer = zoo.info("shapes-cnn").default_cam_layer
    cam = st.GradCAM(model, layer=layer).attribute(data.images, target=data.labels).attributions[:, 0]
    masks = data.masks[:, 0].float()
    inside = (cam * masks).sum(dim=(1, 2)) / cam.sum(dim=(1, 2)).clamp(min=1e-12)
    area = masks.mean(dim=(1, 2))
    assert float((inside / area).median()) > 1.5

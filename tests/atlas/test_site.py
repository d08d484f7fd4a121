"""The atlas site: structure and links, labels and dead units, incremental builds that
survive interruptions in every stage, refusals, and the real feature visualisation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from seethrough._core.errors import ConfigError, InputError, LayerError
from seethrough.atlas import Atlas, TensorSource
from seethrough.atlas import site as site_mod
from seethrough.testing import TinyCNN, TinyResNet, seeded

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402
from _site_helpers import FakeVisualize, check_links  # noqa: E402


def _images(n=24, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a build, except the times it records (index page, manifest, the
    examples file's header): what two builds of the same settings must share."""
    from safetensors.torch import load_file

    skip = {"index.html", "manifest.json", "examples.safetensors"}
    out = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not (p.parent == root and p.name in skip)
    }
    tables = load_file(str(root / "examples.safetensors"))
    out["examples.safetensors"] = b"".join(k.encode() + tables[k].numpy().tobytes() for k in sorted(tables))
    return out


@pytest.fixture
def small_groups(monkeypatch):
    monkeypatch.setattr(site_mod, "FV_GROUP", 4)
    monkeypatch.setattr(site_mod, "_PAGE_BLOCK", 3)


def test_structure_links_and_content(tmp_path, small_groups):
    model = seeded(TinyCNN)
    vis = FakeVisualize()
    labels = {"features.3": {2: "stripes (IoU 0.31)", 7: "red <blob>"}}
    snap = snapshot(model)
    build = Atlas(model, top_k=3, steps=5, visualize=vis, unit_labels=labels, batching=5).build(
        _images(), tmp_path / "a"
    )
    assert_unchanged(model, snap)
    out = build.out_dir
    assert build.layers == ("features.0", "features.3") and build.n_units == 8 + 12
    assert build.featurevis == "done" and build.featurevis_channels == 20 and build.pages_written == 20
    assert not build.resumed
    # every channel visualised exactly once, in groups of FV_GROUP
    assert sorted((layer, c) for layer, chans in vis.calls for c in chans) == (
        [("features.0", c) for c in range(8)] + [("features.3", c) for c in range(12)]
    )
    pages, links = check_links(out)
    assert pages == 1 + 2 + 20
    index = (out / "index.html").read_text()
    assert 'href="layers/features.0/index.html"' in index and "(12, 8, 8)" in index
    layer = (out / "layers/features.3/index.html").read_text()
    assert "stripes (IoU 0.31)" in layer and "red &lt;blob&gt;" in layer and layer.count('<a class="unit') == 12
    unit = (out / "layers/features.3/u2.html").read_text()
    assert "Dissection label" in unit and "stripes (IoU 0.31)" in unit
    assert 'href="u1.html"' in unit and 'href="u3.html"' in unit and 'href="index.html"' in unit
    assert 'href="../../index.html"' in unit and 'src="img/u2_fv.png"' in unit
    assert unit.count('class="ex"') == 6  # top 3 and bottom 3
    assert "<script" not in unit
    first, last = (out / "layers/features.3/u0.html").read_text(), (out / "layers/features.3/u11.html").read_text()
    assert "u-1.html" not in first and "u12.html" not in last
    # every data-set image a page shows was written once
    shown = {int(p.stem) for p in (out / "examples").glob("*.png")}
    from seethrough.atlas import DatasetExamples

    ex = DatasetExamples.load(out / "examples.safetensors")
    used = set()
    for nm in ex.layers_:
        used |= set(ex.top_indices_[nm].reshape(-1).tolist()) | set(ex.bottom_indices_[nm].reshape(-1).tolist())
    assert shown == used


def test_rebuild_of_a_finished_atlas_does_nothing(tmp_path, small_groups):
    model = seeded(TinyCNN)
    Atlas(model, top_k=2, steps=3, visualize=FakeVisualize()).build(_images(), tmp_path / "a")
    vis = FakeVisualize()
    again = Atlas(model, top_k=2, steps=3, visualize=vis).build(_images(), tmp_path / "a")
    assert again.resumed and vis.calls == [] and again.pages_written == 0 and again.featurevis_channels == 0


def _reference(tmp_path, **kw):
    model = seeded(TinyResNet)
    ref = Atlas(model, top_k=2, steps=3, visualize=FakeVisualize(), batching=4, checkpoint_every=1, **kw)
    ref.build(_images(), tmp_path / "ref")
    return _files(tmp_path / "ref")


def test_interrupted_feature_visualisation_resumes_without_redoing(tmp_path, small_groups):
    reference = _reference(tmp_path)
    model = seeded(TinyResNet)
    dying = FakeVisualize(fail_on_call=4)
    with pytest.raises(KeyboardInterrupt):
        Atlas(model, top_k=2, steps=3, visualize=dying, batching=4).build(_images(), tmp_path / "b")
    done_before = {(layer, c) for layer, chans in dying.calls for c in chans}
    assert len(dying.calls) == 3
    vis = FakeVisualize()
    build = Atlas(model, top_k=2, steps=3, visualize=vis, batching=4).build(_images(), tmp_path / "b")
    redone = {(layer, c) for layer, chans in vis.calls for c in chans}
    assert build.resumed and not (redone & done_before)
    n_channels = sum(int(t.shape[0]) for n, t in model.state_dict().items() if n.endswith("weight") and t.dim() == 4)
    assert len(redone) + len(done_before) == n_channels == build.n_units
    assert _files(tmp_path / "b") == reference
    check_links(tmp_path / "b")


class _DyingPages(Atlas):
    """Fails while writing the ``fail_at``-th unit page."""

    def __init__(self, *a, fail_at: int, **kw):
        super().__init__(*a, **kw)
        self.fail_at = fail_at
        self.n = 0

    def _unit_page(self, *a, **kw):
        self.n += 1
        if self.n == self.fail_at:
            raise KeyboardInterrupt("interrupted by the test")
        return super()._unit_page(*a, **kw)


def test_interrupted_page_writing_resumes_where_it_stopped(tmp_path, small_groups):
    reference = _reference(tmp_path)
    model = seeded(TinyResNet)
    with pytest.raises(KeyboardInterrupt):
        _DyingPages(model, top_k=2, steps=3, visualize=FakeVisualize(), batching=4, fail_at=11).build(
            _images(), tmp_path / "c"
        )
    vis = FakeVisualize()
    build = Atlas(model, top_k=2, steps=3, visualize=vis, batching=4).build(_images(), tmp_path / "c")
    assert vis.calls == []  # feature visualisations were all done before
    # conv1 (8 units, blocks of 3) was recorded; the 11th page fell in an unfinished block
    assert build.pages_written == build.n_units - 8
    assert _files(tmp_path / "c") == reference


class _DyingSource(TensorSource):
    def __init__(self, images, fail_after):
        super().__init__(images)
        self.calls, self.fail_after = 0, fail_after

    def get(self, idx):
        self.calls += 1
        if self.calls > self.fail_after:
            raise KeyboardInterrupt("interrupted by the test")
        return super().get(idx)


def test_interrupted_examples_pass_resumes(tmp_path, small_groups):
    reference = _reference(tmp_path)
    model = seeded(TinyResNet)
    with pytest.raises(KeyboardInterrupt):
        Atlas(model, top_k=2, steps=3, visualize=FakeVisualize(), batching=4, checkpoint_every=1).build(
            _DyingSource(_images(), fail_after=4), tmp_path / "d"
        )
    assert (tmp_path / "d" / "examples.ckpt").is_file()
    build = Atlas(model, top_k=2, steps=3, visualize=FakeVisualize(), batching=4, checkpoint_every=1).build(
        _images(), tmp_path / "d"
    )
    assert build.resumed and not (tmp_path / "d" / "examples.ckpt").exists()
    assert _files(tmp_path / "d") == reference


def test_refusals(tmp_path, small_groups):
    model = seeded(TinyCNN)
    Atlas(model, top_k=2, steps=0).build(_images(), tmp_path / "a")
    with pytest.raises(ConfigError, match="top_k") as e:
        Atlas(model, top_k=3, steps=0).build(_images(), tmp_path / "a")
    assert "another output folder" in str(e.value)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        Atlas(model, steps=0).build(_images(), foreign)
    with pytest.raises(InputError, match="empty"):
        Atlas(model, steps=0).build(_images()[:0], tmp_path / "e")
    with pytest.raises(LayerError, match="features.3"):
        Atlas(model, steps=0, unit_labels={"features.33": {0: "x"}}).build(_images(), tmp_path / "f")
    with pytest.raises(InputError, match="unit indices"):
        Atlas(model, steps=0, unit_labels={"features.3": {"first": "x"}}).build(_images(), tmp_path / "g")
    with pytest.raises(ConfigError, match="steps"):
        Atlas(model, steps=-1).build(_images(), tmp_path / "h")
    with pytest.raises(InputError, match=r"per-sample shape \(4, 16, 16\)"):
        Atlas(model, steps=0).build(torch.rand(4, 4, 16, 16), tmp_path / "i")
    # a build that failed before doing anything does not block a corrected one
    assert Atlas(model, steps=0, top_k=1).build(_images(), tmp_path / "i").n_units == 20


def test_dead_unit_page_says_so_and_steps_zero_uses_patches(tmp_path):
    model = seeded(TinyCNN)
    with torch.no_grad():
        model.features[3].weight[5].zero_()
        model.features[3].bias[5] = -2.0
    build = Atlas(model, layers="features.3", top_k=2, steps=0).build(_images(), tmp_path / "a")
    assert build.featurevis == "off" and not list((tmp_path / "a").rglob("*_fv.png"))
    page = (tmp_path / "a/layers/features.3/u5.html").read_text()
    assert "never activates" in page and "-2" in page
    assert "never activates" not in (tmp_path / "a/layers/features.3/u4.html").read_text()
    layer = (tmp_path / "a/layers/features.3/index.html").read_text()
    assert layer.count('class="patch"') == 12 and "dead" in layer
    check_links(tmp_path / "a")


def test_a_failing_layer_visualisation_is_reported_not_fatal(tmp_path):
    from seethrough._core.errors import LayerError as LE

    def vis(model, layer, channels=None, **kw):
        if layer == "features.0":
            raise LE("cannot visualise this layer")
        return FakeVisualize()(model, layer, channels, **kw)

    build = Atlas(seeded(TinyCNN), top_k=2, steps=2, visualize=vis).build(_images(), tmp_path / "a")
    assert build.featurevis == "failed for features.0"
    assert "cannot visualise this layer" in (tmp_path / "a/layers/features.0/u0.html").read_text()
    assert 'src="img/u0_fv.png"' in (tmp_path / "a/layers/features.3/u0.html").read_text()
    check_links(tmp_path / "a")


def test_real_feature_visualisation(tmp_path):
    pytest.importorskip("seethrough.featurevis")
    model = seeded(TinyCNN)
    snap = snapshot(model)
    build = Atlas(model, layers="features.3", top_k=2, steps=2).build(_images(8), tmp_path / "a")
    assert_unchanged(model, snap)
    assert build.featurevis == "done" and build.featurevis_channels == 12
    from PIL import Image

    img = Image.open(tmp_path / "a/layers/features.3/img/u0_fv.png")
    assert img.size == (16, 16) and img.mode == "RGB"
    check_links(tmp_path / "a")


def test_new_labels_rewrite_pages_only(tmp_path, small_groups):
    model = seeded(TinyCNN)
    Atlas(model, top_k=2, steps=3, visualize=FakeVisualize()).build(_images(), tmp_path / "a")
    fv = (tmp_path / "a/layers/features.3/img/u1_fv.png").stat().st_mtime_ns
    vis = FakeVisualize()
    build = Atlas(model, top_k=2, steps=3, visualize=vis, unit_labels={"features.3": {1: "corner"}}).build(
        _images(), tmp_path / "a"
    )
    assert vis.calls == [] and build.pages_written == 12  # the labelled layer's pages only
    assert "corner" in (tmp_path / "a/layers/features.3/u1.html").read_text()
    assert "corner" in (tmp_path / "a/layers/features.3/index.html").read_text()
    assert (tmp_path / "a/layers/features.3/img/u1_fv.png").stat().st_mtime_ns == fv

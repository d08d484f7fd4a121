"""The atlas of the bundled shapes model in headless Chromium: pages render from disk
(file://), links and images resolve, images are drawn, and an interrupted build of the
same atlas resumes to the same files. Also the demo-report section."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _site_helpers import FakeVisualize, check_links  # noqa: E402

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium/chromium-browser/google-chrome on PATH to load the pages in"
)


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _dom(page: Path) -> str:
    res = _chromium("--dump-dom", page.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _colours(page: Path, shot: Path) -> int:
    res = _chromium("--window-size=1000,900", f"--screenshot={shot}", page.resolve().as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


@pytest.fixture(scope="module")
def shapes_atlas(tmp_path_factory):
    import torch

    from seethrough import zoo
    from seethrough.app import open_source
    from seethrough.atlas import Atlas

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("atlas") / "shapes-cnn"
    model = zoo.load("shapes-cnn")
    pytest.importorskip("seethrough.featurevis")
    build = Atlas(model, layers="features.0,features.14", top_k=3, steps=2).build(open_source("shapes", n=60), out)
    return build


@pytest.mark.slow
@needs_chromium
def test_pages_render_in_chromium(shapes_atlas, tmp_path):
    out = shapes_atlas.out_dir
    pages, links = check_links(out)
    assert pages == 1 + 2 + 32 + 128 and links > 1000
    from PIL import Image

    for png in list(out.rglob("*.png"))[:200]:
        Image.open(png).verify()

    index = _dom(out / "index.html")
    assert "ShapesCNN atlas" in index and index.count('href="layers/') == 2
    layer = _dom(out / "layers/features.14/index.html")
    assert len(re.findall(r'<a class="unit[^"]*" href="u\d+\.html"', layer)) == 128
    assert len(re.findall(r'<img src="img/u\d+_fv\.png"', layer)) == 128
    unit = _dom(out / "layers/features.14/u7.html")
    assert "features.14 · unit 7" in unit and "Most activating examples" in unit
    assert len(re.findall(r'class="box"', unit)) == 6

    # images are drawn: the page has far more colours than the same page without them
    page = out / "layers/features.14/u7.html"
    bare = page.with_name("bare.html")
    bare.write_text(re.sub(r"<img [^>]*>", "", page.read_text(encoding="utf-8")), encoding="utf-8")
    try:
        with_images, without = _colours(page, tmp_path / "a.png"), _colours(bare, tmp_path / "b.png")
    finally:
        bare.unlink()
    assert with_images > 3 * without, (with_images, without)


@pytest.mark.slow
@needs_chromium
def test_interrupted_shapes_atlas_resumes_and_renders(tmp_path, monkeypatch):
    import torch

    from seethrough import zoo
    from seethrough.app import open_source
    from seethrough.atlas import Atlas

    torch.set_num_threads(1)
    model = zoo.load("shapes-cnn")
    data = open_source("shapes", n=40)
    kw = dict(layers="features.7", top_k=2, steps=1)
    dying = FakeVisualize(fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        Atlas(model, visualize=dying, **kw).build(data, tmp_path / "a")
    vis = FakeVisualize()
    build = Atlas(model, visualize=vis, **kw).build(data, tmp_path / "a")
    assert build.resumed and [c[0] for _, c in vis.calls] == [32]  # only the second group
    check_links(tmp_path / "a")
    assert len(re.findall(r'<a class="unit', _dom(tmp_path / "a/layers/features.7/index.html"))) == 64


@pytest.mark.slow
def test_demo_report_section(tmp_path, monkeypatch):
    import torch

    from seethrough.app.demo import atlas as _report
    from seethrough.report.html import HtmlReport

    torch.set_num_threads(1)
    monkeypatch.setattr(_report, "DEMO_IMAGES", 40)
    monkeypatch.setattr(_report, "DEMO_STEPS", 1)
    report = HtmlReport("demo")
    index = _report.atlas_section(report, tmp_path)
    assert index == tmp_path / "atlas" / "index.html" and index.is_file()
    report.save(tmp_path / "index.html")
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="atlas/index.html"' in html and "Atlas of the shapes model" in html
    assert len(re.findall(r'<img class="st-img" src="data:image/png;base64,', html)) == 6
    for href in re.findall(r'href="(atlas/[^"#]+)"', html):
        assert (tmp_path / href).is_file(), href
    check_links(tmp_path / "atlas")

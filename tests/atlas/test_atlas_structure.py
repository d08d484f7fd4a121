"""The atlas family on the shared services: the estimator base, the result base, the core
capture (in-place safety, reused modules), its views, the CLI on the shared model/data
arguments, and its imports (a pure library: no app, zoo, bundled data or other family's
private modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import seethrough.atlas as atlas
from seethrough._core.errors import InputError, LayerError, NotFittedError
from seethrough._core.estimator import Estimator
from seethrough._core.result import Result
from seethrough.atlas import AtlasBuild, DatasetExamples, ReceptiveField, UnitExamples
from seethrough.atlas.views import crop_html, selective_units
from seethrough.testing import TinyCNN, seeded


def _images(n=12, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_dataset_examples_is_an_estimator():
    model = seeded(TinyCNN)
    ex = DatasetExamples(model, layers=["features.0"], top_k=2, batching=4)
    assert isinstance(ex, Estimator) and not ex.is_fitted()
    assert ex.get_params()["top_k"] == 2 and ex.get_params()["batching"] == 4
    with pytest.raises(NotFittedError, match="call fit"):
        ex.unit("features.0", 0)
    with pytest.raises(NotFittedError):
        ex.save("never.safetensors")
    assert "not fitted" in repr(ex)
    assert ex.fit(_images()) is ex and ex.is_fitted()
    fitted = ex.fitted_attributes()
    assert {"layers_", "top_values_", "top_boxes_", "n_examples_", "seconds_"} <= set(fitted)
    assert all(name.endswith("_") for name in fitted)
    clone = DatasetExamples(**ex.get_params()).fit(_images())
    assert torch.equal(clone.top_indices_["features.0"], ex.top_indices_["features.0"])
    with pytest.raises(TypeError, match="top_kk"):
        ex.set_params(top_kk=3)


def test_frozen_results_are_results(tmp_path):
    ex = DatasetExamples(seeded(TinyCNN), top_k=2).fit(_images())
    unit = ex.unit("features.3", 1)
    assert isinstance(unit, Result)
    back = UnitExamples.load(unit.save(tmp_path / "unit.safetensors"))
    assert isinstance(back, UnitExamples) and back.layer == "features.3" and back.unit == 1
    assert torch.equal(back.top_indices, unit.top_indices) and torch.equal(back.top_boxes, unit.top_boxes)
    assert back.mean == unit.mean and back.n_examples == unit.n_examples
    field = ex.fields_["features.3"]
    assert isinstance(field, Result) and field == ReceptiveField(field.stride, field.offset, field.span)
    assert ReceptiveField.load(field.save(tmp_path / "rf.safetensors")) == field
    assert issubclass(AtlasBuild, Result)


def test_later_in_place_operations_do_not_change_recorded_values():
    # the Linear's output is changed in place by the ReLU after it; the recorded values
    # must be the Linear's, negatives included
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(inplace=True), nn.Linear(6, 4)).eval()
    torch.manual_seed(0)
    x = torch.randn(20, 10)
    ex = DatasetExamples(model, layers=["0", "2"], top_k=3).fit(x)
    with torch.no_grad():
        ref = model[0](x)
    assert float(ex.bottom_values_["0"].min()) < 0
    torch.testing.assert_close(ex.bottom_values_["0"], torch.sort(ref.t(), dim=1).values[:, :3])
    torch.testing.assert_close(ex.mean_["0"], ref.mean(0))


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(self.conv(self.conv(x)))


def test_a_reused_module_is_refused():
    with pytest.raises(LayerError, match="more than once"):
        DatasetExamples(_Twice().eval(), layers=["conv", "head"], top_k=2).fit(_images(3))
    ex = DatasetExamples(_Twice().eval(), layers=["head"], top_k=2).fit(_images(3))
    assert ex.n_units("head") == 2


def test_views():
    ex = DatasetExamples(seeded(TinyCNN), layers=["features.3"], top_k=2).fit(_images())
    units = selective_units(ex, "features.3", 4)
    top, mean, std = ex.top_values_["features.3"][:, 0], ex.mean_["features.3"], ex.std_["features.3"]
    score = (top - mean) / std.clamp(min=1e-6)
    assert len(units) == 4 and units == torch.argsort(score, descending=True, stable=True)[:4].tolist()
    assert score[units[0]] == score.max()
    with pytest.raises(LayerError):
        selective_units(ex, "features.33")
    with pytest.raises(NotFittedError):
        selective_units(DatasetExamples(seeded(TinyCNN)), "features.3")
    html = crop_html("a<b>.png", (2, 4, 5, 11), 16, 16, 80, 'patch "x"')
    # 4 rows x 8 columns shown 80 pixels wide: scale 10, the image shifted by the box corner
    assert 'style="width:80.0px;height:40.0px"' in html
    assert "width:160.0px;height:160.0px;left:-40.0px;top:-20.0px" in html
    assert 'src="a&lt;b&gt;.png"' in html and 'alt="patch &quot;x&quot;"' in html
    with pytest.raises(InputError, match="empty"):
        crop_html("a.png", (5, 0, 4, 3), 16, 16, 80, "")


def test_cli_takes_the_shared_data_seed(tmp_path, capsys):
    from safetensors.torch import save_file

    from seethrough.app.cli import main

    weights = tmp_path / "w.safetensors"
    save_file(seeded(TinyCNN).state_dict(), str(weights))
    common = [
        "examples",
        "--model",
        "seethrough.testing.models:TinyCNN",
        "--weights",
        str(weights),
        "--data",
        "shapes",
        "--n",
        "6",
        "--size",
        "32",
        "--layers",
        "features.0",
        "--top-k",
        "2",
    ]
    tables = {}
    for name, extra in (("new", ["--data-seed", "3"]), ("old", ["--seed", "3"]), ("zero", [])):
        out = tmp_path / f"{name}.safetensors"
        assert main([*common, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        tables[name] = DatasetExamples.load(out)
    assert tables["new"].data_ == tables["old"].data_  # --seed: the earlier name of --data-seed
    assert torch.equal(tables["new"].top_values_["features.0"], tables["old"].top_values_["features.0"])
    assert not torch.equal(tables["new"].top_values_["features.0"], tables["zero"].top_values_["features.0"])


_FORBIDDEN = ("seethrough.app", "seethrough.cli", "seethrough.zoo", "seethrough.data")
_FAMILIES = ("attribution", "evaluation", "featurevis", "influence", "concepts")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against seethrough.atlas.<module>
                parts = ["seethrough", "atlas"][: max(0, 3 - node.level)]
                base = ".".join(parts + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def test_the_family_imports_no_app_zoo_data_or_other_privates():
    files = sorted(Path(atlas.__file__).parent.glob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            assert not any(name == f or name.startswith(f + ".") for f in _FORBIDDEN), (path.name, name)
            for fam in _FAMILIES:
                rest = name.split(".")[2:] if name.startswith(f"seethrough.{fam}.") else []
                assert not (rest and rest[0].startswith("_")), (path.name, name)

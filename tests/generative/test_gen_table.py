import csv

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import seethrough.generative.views  # noqa: F401  (registers the views)
from seethrough._core.errors import InputError
from seethrough._core.result import Result
from seethrough.generative.table import AttributeTable


def _table():
    return AttributeTable(
        {
            "step": [0, 1, 2],
            "charge": np.array([1.5, -0.25, 3.0]),
            "seq": ["AC", "<b>&", "G"],
            "ok": [True, False, True],
        },
        title="t",
    )


def test_columns_and_access():
    t = _table()
    assert len(t) == 3 and t.names == ("step", "charge", "seq", "ok")
    assert isinstance(t["charge"], torch.Tensor) and t["seq"] == ("AC", "<b>&", "G")
    assert t.numeric() == ("step", "charge", "ok")
    assert t.rows()[1] == {"step": 1, "charge": -0.25, "seq": "<b>&", "ok": False}
    assert t.to_records()[2][2] == "G"
    assert t.take([2, 0])["seq"] == ("G", "AC")
    assert len(t.take(np.array([True, False, True]))) == 2
    with pytest.raises(KeyError, match="columns are"):
        t["nope"]
    with pytest.raises(InputError, match="one value per row"):
        AttributeTable({"a": [1, 2], "b": [1]})
    with pytest.raises(InputError, match="mixes"):
        AttributeTable({"a": ["x", 1]})
    with pytest.raises(InputError, match="exist already"):
        t.with_columns({"seq": [1, 2, 3]})


def test_csv_pandas(tmp_path):
    t = _table()
    p = t.to_csv(tmp_path / "t.csv")
    with p.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "charge", "seq", "ok"]
    assert float(rows[2][1]) == -0.25 and rows[2][2] == "<b>&"
    df = t.to_pandas()
    assert list(df.columns) == list(t.names) and df["charge"].iloc[2] == 3.0


def test_save_load_roundtrip(tmp_path):
    t = _table()
    back = Result.load(t.save(tmp_path / "t.safetensors"))
    assert isinstance(back, AttributeTable) and back.names == t.names
    assert back["seq"] == t["seq"]
    torch.testing.assert_close(back["charge"], t["charge"])
    assert back.title == "t"


def test_views():
    t = _table()
    fig = t.plot()
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 3
    fig2 = Figure()
    ax = fig2.add_subplot()
    assert t.plot(ax=ax, x="step") is fig2 and len(ax.lines) == 2
    html = t.to_html()
    assert "&lt;b&gt;&amp;" in html and "<b>&" not in html and "-0.25" in html

import numpy as np
import torch
from matplotlib.figure import Figure

import seethrough.generative.views  # noqa: F401  (registers the views)
from seethrough.generative.directions import Direction
from seethrough.generative.disentangle import dci, factor_response, mig
from seethrough.generative.latent import Latent
from seethrough.generative.sampler import ConditionalSampler, NormalPrior
from seethrough.testing.generative import TinySeqAE, TinyVAE


def test_walk_views_images_and_table():
    lat = Latent(TinyVAE())
    walk = lat.interpolate_z(torch.zeros(4), torch.ones(4), steps=4)
    fig = walk.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 5  # the frame + one axes per image
    html = walk.to_html()
    assert html.count("<img") == 4 and "alpha" in html
    m = TinySeqAE()
    seq = Latent(m).traverse(
        torch.zeros(4),
        Direction.from_vector(torch.ones(4), name="<d>"),
        describe=lambda o, z: {"sequence": m.sequences(o), "n": [len(s) for s in m.sequences(o)]},
    )
    fig = seq.plot()
    assert isinstance(fig, Figure)
    own = Figure()
    ax = own.add_subplot()
    assert seq.plot(ax=ax) is own
    h = seq.to_html()
    assert "&lt;d&gt;" in h and "<d>" not in h


def test_samples_and_factor_views():
    m = TinySeqAE()
    s = ConditionalSampler(
        Latent(m),
        NormalPrior(4),
        scorers={"a": lambda z: z[:, 0].numpy(), "b": lambda z: z[:, 1].numpy()},
        conditions="a > 0",
        describe=lambda o, z: {"sequence": m.sequences(o)},
    ).sample(10, chunk=64)
    assert isinstance(s.plot(), Figure) and "acceptance rate" in s.to_html()
    img = ConditionalSampler(Latent(TinyVAE()), NormalPrior(4)).sample(3)
    assert isinstance(img.plot(), Figure) and img.to_html().count("<img") == 3
    r = factor_response(
        lambda z: z, lambda o: o[:, :2], torch.randn(5, 3), [0, 1, 2], factor_names=["x", "y"], scale=[1.0, 1.0]
    )
    fig = r.plot()
    assert isinstance(fig, Figure) and any(t.get_text() == "1.00" for t in fig.axes[0].texts)
    assert "purity" in r.to_html()
    f = np.random.default_rng(0).uniform(size=(200, 2))
    assert isinstance(mig(f, f).plot(), Figure) and "MIG" in mig(f, f).to_html()
    d = dci(f, f, model="forest", n_estimators=5)
    assert isinstance(d.plot(), Figure) and "disentanglement" in d.to_html()

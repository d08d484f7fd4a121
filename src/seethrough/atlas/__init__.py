"""Dataset examples and a browsable, Microscope-style atlas of a model's units.

>>> from seethrough import zoo
>>> from seethrough.atlas import Atlas, DatasetExamples
>>> from seethrough.app import open_source
>>> model = zoo.load("shapes-cnn")
>>> data = open_source("shapes", n=5000)
>>> ex = DatasetExamples(model, top_k=9).fit(data)           # doctest: +SKIP
>>> ex.top_indices_["features.14"][3]    # the 9 images that excite channel 3 most
>>> Atlas(model, steps=256).build(data, "atlas/")            # doctest: +SKIP

* :class:`DatasetExamples`: one resumable streaming pass; top-k and bottom-k examples of
  every unit, the position of each maximum and its receptive-field box.
* :class:`Atlas`: the static site (index -> layers -> units) with feature
  visualisations, dataset examples, patches and dissection labels; incremental.
* Data: a tensor, a map-style dataset or an :class:`ImageSource` (these live in
  ``seethrough._core.sources``); the application's ``seethrough.app.open_source`` opens
  bundled data (``"shapes"``, ``"mnist"``), a folder of images or a tensor file as one.
* :mod:`seethrough.atlas.views`: HTML pieces (receptive-field patches) and the most
  selective units, for reports built on the atlas.

See docs/atlas.md.
"""

from .._core.sources import DatasetSource, FolderSource, ImageSource, TensorSource, as_source
from .examples import DatasetExamples, UnitExamples, model_fingerprint, select_layers
from .receptive import ReceptiveField
from .site import Atlas, AtlasBuild

__all__ = [
    "Atlas",
    "AtlasBuild",
    "DatasetExamples",
    "UnitExamples",
    "ReceptiveField",
    "select_layers",
    "model_fingerprint",
    "ImageSource",
    "TensorSource",
    "FolderSource",
    "DatasetSource",
    "as_source",
]

"""The application layer: model and data loading, the command line and the demo.

Everything here is built on the public library (``seethrough._core``, the families,
``seethrough.report``); nothing below imports it.
"""

from .data import open_source
from .models import load_model, load_state_dict

__all__ = ["load_model", "load_state_dict", "open_source"]

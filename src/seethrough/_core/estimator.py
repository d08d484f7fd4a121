"""One base for fitted objects (CAVs, probes, latent directions, dataset examples), in the
manner of scikit-learn: ``__init__`` takes keyword parameters and only stores them,
``fit(...)`` does the work and returns ``self``, and what fitting learns is stored in
attributes whose names end in ``_``. :meth:`Estimator.get_params` reads the parameters
back from the ``__init__`` signature, so ``repr`` and cloning need no per-class code."""

from __future__ import annotations

import inspect
from typing import Any

from .errors import NotFittedError

__all__ = ["Estimator"]


class Estimator:
    """Base of every fitted object. Subclasses implement ``fit(...) -> self``."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters, as stored."""
        return {name: getattr(self, name) for name in self._param_names() if hasattr(self, name)}

    def set_params(self, **params: Any) -> Estimator:
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise TypeError(f"{type(self).__name__} has no parameter {k!r}; its parameters: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def fitted_attributes(self) -> list[str]:
        """Names of the attributes set by ``fit`` (public, ending in ``_``)."""
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]

    def is_fitted(self) -> bool:
        return bool(self.fitted_attributes())

    def check_fitted(self, hint: str = "call fit(...) first") -> None:
        """Raise :class:`NotFittedError` (a ConfigError) before ``fit`` has run."""
        if not self.is_fitted():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; {hint}")

    def __repr__(self) -> str:
        def show(v: Any) -> str:
            r = repr(v)
            return r if len(r) <= 40 else r[:37] + "..."

        params = ", ".join(f"{k}={show(v)}" for k, v in self.get_params().items())
        state = "" if self.is_fitted() else " (not fitted)"
        return f"{type(self).__name__}({params}){state}"

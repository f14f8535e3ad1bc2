"""Sluice plugins in Python: the SDK over the WIT package `sluice:plugin@0.2.0`.

    import sluice_sdk
    from sluice_sdk import Filter, params

    class MaxValue(Filter):
        def setup(self):                      # once per batch
            self.max = params.get_float("max", 100.0)

        def keep(self, point):                # once per point: a lazy PointView
            v = point.number("value")
            return v is None or v <= self.max

    WitWorld = sluice_sdk.export(MaxValue)    # what componentize-py calls

Modules: `params`, `log`, `lookup`, `state` (the host imports), `testing` (native tests).
"""

from . import log, lookup, params, state
from .batch import Batch, PointView, RawBatch
from .errors import PluginError
from .model import (
    AlertEvent,
    AlertState,
    Point,
    Series,
    Unsigned,
    Window,
    as_number,
    format_float,
    kind_of,
    series_key,
)
from .plugin import Alert, Filter, Transform, export

__version__ = "0.2.0"
WIT_PACKAGE = "sluice:plugin@0.2.0"

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertState",
    "Batch",
    "Filter",
    "PluginError",
    "Point",
    "PointView",
    "RawBatch",
    "Series",
    "Transform",
    "Unsigned",
    "Window",
    "as_number",
    "export",
    "format_float",
    "kind_of",
    "log",
    "lookup",
    "params",
    "series_key",
    "state",
]

"""The trivial filter of the host benchmark: keep a point iff it has a field `value` whose
numeric value (float, integer or unsigned) is >= 0. The Python twin of plugins/bench-filter."""

import sluice_sdk
from sluice_sdk import Filter


class BenchFilter(Filter):
    def keep(self, point):
        v = point.number("value")
        # None (missing, boolean or string) drops; NaN >= 0 is False and drops too.
        return v is not None and v >= 0.0


WitWorld = sluice_sdk.export(BenchFilter)

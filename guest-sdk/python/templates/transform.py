"""A transform: converts field `temp_f` (Fahrenheit) to `temp_c` (Celsius), and, when the
parameter `table` names a lookup table, adds the columns of the row keyed by the point's
`host` tag as tags (`--lookup hosts=hosts.csv --param table=hosts`).

The host calls `transform_batch` once per batch: `setup` runs first (read parameters
there), then `transform` once per point with an owned copy you may change. Return the
point, a list of points (or `yield` them), or None to drop it.
"""

import sluice_sdk
from sluice_sdk import PluginError, Transform, lookup, params


class Celsius(Transform):
    def setup(self):
        self.source = params.get_str("field", "temp_f")
        self.table = params.get_str("table")

    def transform(self, point):
        f = point.number(self.source)
        if f is not None:
            point.remove_field(self.source)
            point.set_field("temp_c", round((f - 32.0) * 5.0 / 9.0, 3))
        elif self.source in point.fields:
            # Fails the whole batch; the SDK adds the point's index.
            raise PluginError(f"field `{self.source}` is not a number")
        if self.table:
            host = point.tag("host")
            row = lookup.get(self.table, host) if host is not None else None
            for column, value in (row or {}).items():
                point.set_tag(column, value)
        return point


WitWorld = sluice_sdk.export(Celsius)

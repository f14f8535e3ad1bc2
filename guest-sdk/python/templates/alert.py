"""An alert: fires (critical) when a window's aggregate (parameter `aggregate`, default
`mean`) reaches the parameter `above`, and resolves when it falls back below it.

    sluice plugin run dist/NAME.wasm --input windows.lp --param above=90

The host calls `evaluate_batch` once per batch of closed windows: `setup` runs first, then
`evaluate` once per window. Return an alert only when the window changes its series' state:
the host passes the state it holds in `window.state`, so nothing needs remembering here.
"""

import sluice_sdk
from sluice_sdk import Alert, AlertState, PluginError, format_float, params


class Above(Alert):
    def setup(self):
        self.above = params.get_float("above")
        if self.above is None:
            raise PluginError("set the parameter `above`")
        self.aggregate = params.get("aggregate", "mean")

    def evaluate(self, window):
        value = window.aggregate(self.aggregate)
        if value is None:
            return None  # this rule doesn't compute our aggregate
        firing = value >= self.above
        if firing == (window.state != AlertState.OK):
            return None  # no change
        state = AlertState.CRITICAL if firing else AlertState.OK
        tags = "".join(f" {k}={v}" for k, v in window.series.tags.items())
        op = ">=" if firing else "<"
        message = (f"{window.series.measurement} {window.field} {self.aggregate} "
                   f"{format_float(value)} {op} {format_float(self.above)}{tags}")
        return window.alert(state, value, message)


WitWorld = sluice_sdk.export(Above)

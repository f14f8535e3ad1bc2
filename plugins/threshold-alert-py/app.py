"""Threshold alert with hysteresis: the Python twin of plugins/threshold-alert.

Parameters: `aggregate` (default `mean`), `warn_above`, `crit_above` (at least one),
`hysteresis` (absolute, default 0). Enters critical at value >= crit_above, warning at
value >= warn_above; leaves critical only below crit_above - hysteresis, and warning only
below warn_above - hysteresis. An alert is emitted only when the state changes; the
previous state comes from the host (`window.state`), so it survives plugin swaps. A window
without the aggregate raises nothing.

Messages read `cpu usage_user mean 93.2 >= 90 (critical) host=a`; a resolution reads
`... 70 < 75 (resolved) ...`, with the threshold in force (lowered by the hysteresis).
Numbers print as the Rust plugin prints them (`format_float`), so both write the same text.
"""

import math

import sluice_sdk
from sluice_sdk import Alert, AlertState, PluginError, format_float, params

STATE_NAMES = {
    AlertState.OK: "resolved",
    AlertState.WARNING: "warning",
    AlertState.CRITICAL: "critical",
}


class Threshold(Alert):
    def setup(self):
        self.warn = params.get_float("warn_above")
        self.crit = params.get_float("crit_above")
        if self.warn is None and self.crit is None:
            raise PluginError("set `warn_above`, `crit_above` or both")
        self.hysteresis = params.get_float("hysteresis", 0.0)
        if math.isnan(self.hysteresis) or self.hysteresis < 0.0:
            raise PluginError(
                f"parameter `hysteresis` = `{format_float(self.hysteresis)}`: must be 0 or more"
            )
        self.aggregate = params.get("aggregate", "mean")

    def evaluate(self, window):
        value = window.aggregate(self.aggregate)
        if value is None:
            return None
        state = window.state
        # While a state holds, its threshold is lowered by the hysteresis, so a value
        # hovering at the threshold doesn't flap.
        crit = self.crit
        if crit is not None and state == AlertState.CRITICAL:
            crit -= self.hysteresis
        warn = self.warn
        if warn is not None and state != AlertState.OK:
            warn -= self.hysteresis
        if crit is not None and value >= crit:
            nxt, limit, op = AlertState.CRITICAL, crit, ">="
        elif warn is not None and value >= warn:
            nxt, limit, op = AlertState.WARNING, warn, ">="
        else:
            # Resolved: below the lowest threshold in force (the warning one if set).
            nxt, op = AlertState.OK, "<"
            limit = warn if warn is not None else crit
        if nxt == state:
            return None
        message = (
            f"{window.series.measurement} {window.field} {self.aggregate} "
            f"{format_float(value)} {op} {format_float(limit)} ({STATE_NAMES[nxt]})"
        )
        for k, v in window.series.tags.items():
            message += f" {k}={v}"
        return window.alert(nxt, value, message)


WitWorld = sluice_sdk.export(Threshold)

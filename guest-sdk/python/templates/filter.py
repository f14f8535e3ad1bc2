"""A filter: drops points whose field `value` is above the parameter `max` (default 100).
Points without a numeric `value` are kept.

    sluice plugin run dist/NAME.wasm --input sample.lp --param max=50

The host calls `filter` once per batch: `setup` runs first (read parameters there), then
`keep` once per point. Keep nothing in globals between batches (use `state`).
"""

import sluice_sdk
from sluice_sdk import Filter, log, params


class MaxValue(Filter):
    def setup(self):
        # A bad value fails the batch with `parameter `max` = `abc`: invalid float literal`.
        self.max = params.get_float("max", 100.0)
        self.dropped = 0

    def keep(self, point):
        # `point` is a lazy view into the batch: only what you read is decoded.
        # number() gives a float for float, integer and unsigned fields, else None.
        v = point.number("value")
        if v is not None and v > self.max:
            self.dropped += 1
            return False
        return True

    # Optional: override the batch method to look at the batch as a whole.
    def filter(self, batch):
        verdicts = super().filter(batch)
        if self.dropped:
            log.debug("dropped points above max", dropped=self.dropped, max=self.max)
        return verdicts


# What componentize-py calls: one line per plugin.
WitWorld = sluice_sdk.export(MaxValue)

"""Drops points by measurement or tag pattern: the Python twin of plugins/drop-filter.

Parameters:
- `measurement`: comma-separated glob patterns (`*`, `?`) of measurements to drop;
- `tag`: comma-separated `key=glob` patterns; a point with a matching tag is dropped;
- `invert`: `true` keeps only the matching points instead.

Without patterns every point is kept.
"""

import sluice_sdk
from sluice_sdk import Filter, PluginError, params


class DropFilter(Filter):
    def setup(self):
        self.tags = []
        for spec in params.get_list("tag"):
            key, sep, pattern = spec.partition("=")
            if not sep or not key:
                raise PluginError(f"parameter `tag`: `{spec}` is not key=pattern")
            self.tags.append((key, pattern))
        self.measurements = params.get_list("measurement")
        self.invert = params.get_bool("invert", False)

    def keep(self, point):
        matches = False
        if self.measurements:
            m = point.measurement
            matches = any(glob(p, m) for p in self.measurements)
        if not matches:
            for key, pattern in self.tags:
                v = point.tag(key)
                if v is not None and glob(pattern, v):
                    matches = True
                    break
        return matches == self.invert


def glob(pattern, text):
    """Glob match with `*` (any run) and `?` (one character), over characters (code
    points), iterative with backtracking to the last `*`: no recursion a hostile pattern
    could blow up."""
    pi = ti = 0
    star_p = star_t = -1
    np, nt = len(pattern), len(text)
    while ti < nt:
        if pi < np and (pattern[pi] == "?" or pattern[pi] == text[ti]):
            pi += 1
            ti += 1
        elif pi < np and pattern[pi] == "*":
            star_p, star_t = pi, ti
            pi += 1
        elif star_p >= 0:
            pi = star_p + 1
            star_t += 1
            ti = star_t
        else:
            return False
    return all(c == "*" for c in pattern[pi:])


WitWorld = sluice_sdk.export(DropFilter)

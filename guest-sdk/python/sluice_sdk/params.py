"""The plugin's parameters, from the pipeline stage configuration (or `--param k=v` of
`sluice plugin run`). Every parameter is text; the typed getters parse it and raise a
`PluginError` naming the parameter, its value and the reason (the batch fails with that
message), as the Rust SDK's `params::parse`:

    parameter `max` = `abc`: invalid float literal
"""

import math
import re

from . import _host
from .errors import PluginError

_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
    re.IGNORECASE,
)


def get(name, default=None):
    """The value of parameter `name` (a str), or `default` when the stage doesn't set it."""
    value = _host.current().params_get(name)
    return default if value is None else value


def get_or(name, default):
    """The value of parameter `name`, or `default`."""
    return get(name, default)


def all():  # noqa: A001 - mirrors the WIT function name
    """Every parameter, name -> value, sorted by name."""
    return dict(_host.current().params_all())


def _error(name, raw, reason):
    return PluginError(f"parameter `{name}` = `{raw}`: {reason}")


def parse_float(name, raw):
    """`raw` (the value of `name`) as a float, with Rust's f64 syntax."""
    s = raw.strip()
    if not s:
        raise _error(name, raw, "cannot parse float from empty string")
    if not _FLOAT.match(s):
        raise _error(name, raw, "invalid float literal")
    return float(s)


def parse_int(name, raw, lo=-(1 << 63), hi=(1 << 63) - 1):
    """`raw` as an int within lo..hi (default: s64), with Rust's integer syntax."""
    s = raw.strip()
    if not s:
        raise _error(name, raw, "cannot parse integer from empty string")
    if not _INT.match(s) or (lo >= 0 and s.startswith("-")):
        # Rust's message, also for a minus sign on an unsigned parameter.
        raise _error(name, raw, "invalid digit found in string")
    v = int(s)
    if v > hi:
        raise _error(name, raw, "number too large to fit in target type")
    if v < lo:
        raise _error(name, raw, "number too small to fit in target type")
    return v


def parse_bool(name, raw):
    """`raw` as a bool: exactly `true` or `false` (trimmed)."""
    s = raw.strip()
    if s == "true":
        return True
    if s == "false":
        return False
    raise _error(name, raw, "provided string was not `true` or `false`")


def get_float(name, default=None):
    """Parameter `name` as a float (`1.5`, `-2`, `1e3`, `inf`); `default` when unset."""
    raw = get(name)
    return default if raw is None else parse_float(name, raw)


def get_int(name, default=None, min=None, max=None):  # noqa: A002
    """Parameter `name` as an int (s64 unless `min`/`max` narrow it); `default` when unset."""
    raw = get(name)
    if raw is None:
        return default
    lo = -(1 << 63) if min is None else min
    hi = (1 << 63) - 1 if max is None else max
    return parse_int(name, raw, lo, hi)


def get_bool(name, default=None):
    """Parameter `name` as a bool (`true` or `false`); `default` when unset."""
    raw = get(name)
    return default if raw is None else parse_bool(name, raw)


def get_str(name, default=None):
    """Parameter `name`, trimmed; `default` when unset."""
    raw = get(name)
    return default if raw is None else raw.strip()


def split_list(raw):
    """The comma-separated, trimmed, non-empty items of `raw`."""
    return [s for s in (part.strip() for part in raw.split(",")) if s]


def get_list(name):
    """Parameter `name` as a list of comma-separated, trimmed, non-empty items; [] when
    unset."""
    raw = get(name)
    return [] if raw is None else split_list(raw)


# The Rust SDK's name.
list = get_list  # noqa: A001


def require(name):
    """The value of parameter `name`; a PluginError when the stage doesn't set it."""
    raw = get(name)
    if raw is None:
        raise PluginError(f"parameter `{name}` is required")
    return raw


def check(condition, name, raw, reason):
    """Raises `parameter `name` = `raw`: reason` unless `condition`."""
    if not condition:
        raise _error(name, raw, reason)


def is_finite(x):
    return math.isfinite(x)

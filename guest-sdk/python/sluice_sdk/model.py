"""Plain Python values of the plugin contract: `Point` (what a transform returns),
`Unsigned` (an int that stays a line-protocol unsigned), and the alert world's `Window`,
`Series`, `AlertState` and `AlertEvent`. They convert to and from the WIT records only at the
boundary, so they work the same natively (unit tests) and inside the component."""

import enum
import math

from .errors import PluginError

# Field kinds, the codes of the batch's `field-kinds` column.
FLOAT = 0
INTEGER = 1
UNSIGNED = 2
BOOLEAN = 3
STRING = 4

KIND_NAMES = ("float", "integer", "unsigned", "boolean", "string")

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1


class Unsigned(int):
    """An int that is a line-protocol unsigned (`7u`): `Unsigned(7)`.

    Reading an unsigned field gives one; it behaves as an int (arithmetic on it gives plain
    ints). In a returned `Point`, an `Unsigned` stays unsigned, a plain int is an integer
    (or an unsigned when it is above 2**63 - 1).
    """

    __slots__ = ()

    def __new__(cls, value=0):
        v = int.__new__(cls, value)
        if v < 0 or v > U64_MAX:
            raise ValueError(f"unsigned value {int(value)} is outside 0..2**64-1")
        return v

    def __repr__(self):
        return f"Unsigned({int(self)})"


def kind_of(value):
    """The kind name of a Python field value: float, integer, unsigned, boolean or string;
    None for a value of no kind. An int above 2**63 - 1 (and up to 2**64 - 1) is unsigned."""
    t = type(value)
    if t is float:
        return "float"
    if t is bool:
        return "boolean"
    if t is str:
        return "string"
    if isinstance(value, Unsigned):
        return "unsigned" if 0 <= value <= U64_MAX else None
    if isinstance(value, int):
        if I64_MIN <= value <= I64_MAX:
            return "integer"
        if 0 <= value <= U64_MAX:
            return "unsigned"
        return None
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return None


def as_number(value):
    """`value` as a float when it is a number (float, integer, unsigned); None for booleans,
    strings and None. The same as `FieldRef::as_f64` of the Rust SDK."""
    t = type(value)
    if t is float:
        return value
    if t is bool or value is None or t is str:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def format_float(value):
    """`value` as Rust's `{}` prints an f64: shortest round-trip digits without an exponent,
    no `.0` on whole numbers (`85`, `93.2`, `0.0000001`, `NaN`, `inf`, `-0`). Lets a Python
    plugin write the same messages as its Rust twin."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    r = repr(value)
    if "e" in r:
        mantissa, exp = r.split("e")
        sign = "-" if mantissa.startswith("-") else ""
        mantissa = mantissa.lstrip("-")
        whole, _, frac = mantissa.partition(".")
        digits = (whole + frac).rstrip("0") or "0"
        point = len(whole) + int(exp)
        if point <= 0:
            body = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            body = digits + "0" * (point - len(digits))
        else:
            body = digits[:point] + "." + digits[point:]
        return sign + body
    if r.endswith(".0"):
        return r[:-2]
    return r


def _escape(s):
    if "\\" in s or "," in s or "=" in s:
        return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    return s


def series_key(measurement, tags):
    """`cpu,host=a`: measurement and tags (sorted by key), with `\\`, `,` and `=` escaped
    by `\\`, so two different series never share a key (a good `state` key). The same key
    as the Rust SDK's `Series::key`."""
    parts = [_escape(measurement)]
    items = tags.items() if isinstance(tags, dict) else tags
    for k, v in sorted(items, key=lambda kv: kv[0]):
        parts.append(_escape(k) + "=" + _escape(v))
    return ",".join(parts)


class Point:
    """A point to return from a transform (and what `PointView.to_point()` copies out).

    `Point("cpu", tags={"host": "a"}, fields={"usage": 12.5}, timestamp=ns)`. `tags` is a
    dict of str to str (the host sorts tags, so order does not matter); `fields` a dict of
    str to float, int, `Unsigned`, bool or str (at least one field); `timestamp` nanoseconds
    since the Unix epoch.
    """

    __slots__ = ("measurement", "tags", "fields", "timestamp")

    def __init__(self, measurement, tags=None, fields=None, timestamp=0):
        self.measurement = measurement
        self.tags = dict(tags) if tags else {}
        self.fields = dict(fields) if fields else {}
        self.timestamp = timestamp

    # Chaining builders, as the Rust SDK's.
    def with_tag(self, key, value):
        self.tags[key] = value
        return self

    def with_field(self, key, value):
        self.fields[key] = value
        return self

    def tag(self, key):
        return self.tags.get(key)

    def set_tag(self, key, value):
        self.tags[key] = value

    def remove_tag(self, key):
        return self.tags.pop(key, None)

    def field(self, key):
        return self.fields.get(key)

    def set_field(self, key, value):
        self.fields[key] = value

    def remove_field(self, key):
        return self.fields.pop(key, None)

    def number(self, key):
        """Field `key` as a float if it is a number; None otherwise."""
        return as_number(self.fields.get(key))

    def series(self):
        return Series(self.measurement, dict(sorted(self.tags.items())))

    def series_key(self):
        return series_key(self.measurement, self.tags)

    def copy(self):
        return Point(self.measurement, self.tags, self.fields, self.timestamp)

    def _typed_fields(self):
        return {k: (kind_of(v), v) for k, v in self.fields.items()}

    def __eq__(self, other):
        if not isinstance(other, Point):
            return NotImplemented
        return (
            self.measurement == other.measurement
            and self.tags == other.tags
            and self._typed_fields() == other._typed_fields()
            and self.timestamp == other.timestamp
        )

    __hash__ = None

    def __repr__(self):
        return (
            f"Point({self.measurement!r}, tags={self.tags!r}, fields={self.fields!r}, "
            f"timestamp={self.timestamp!r})"
        )


class AlertState(enum.Enum):
    """The state of an alert rule for one series."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


class Series:
    """A series: measurement and tags (a dict, sorted by key as the host sends them)."""

    __slots__ = ("measurement", "tags")

    def __init__(self, measurement, tags=None):
        self.measurement = measurement
        self.tags = dict(tags) if tags else {}

    def key(self):
        return series_key(self.measurement, self.tags)

    def __eq__(self, other):
        if not isinstance(other, Series):
            return NotImplemented
        return self.measurement == other.measurement and self.tags == other.tags

    __hash__ = None

    def __repr__(self):
        return f"Series({self.measurement!r}, {self.tags!r})"


class Window:
    """A closed window of one rule for one series (the WIT `window-result`).

    `aggregates` is a dict name -> float (`{"mean": 93.2, "max": 99.0}`); `state` the alert
    state the host holds for this rule and series before this window; `index` its position
    in the batch of windows (what an alert names).
    """

    __slots__ = (
        "rule",
        "series",
        "field",
        "window_start",
        "window_end",
        "aggregates",
        "state",
        "index",
    )

    def __init__(
        self,
        rule="rule",
        series=None,
        field="value",
        window_start=0,
        window_end=0,
        aggregates=None,
        state=AlertState.OK,
        index=0,
    ):
        self.rule = rule
        self.series = series if series is not None else Series("m")
        self.field = field
        self.window_start = window_start
        self.window_end = window_end
        self.aggregates = dict(aggregates) if aggregates else {}
        self.state = state
        self.index = index

    def aggregate(self, name):
        """The value of aggregate `name`, or None."""
        return self.aggregates.get(name)

    def alert(self, state, value, message):
        """An `AlertEvent`: this window changes its series to `state`."""
        return AlertEvent(self, state, value, message)

    def __repr__(self):
        return (
            f"Window(rule={self.rule!r}, series={self.series!r}, field={self.field!r}, "
            f"window_start={self.window_start}, window_end={self.window_end}, "
            f"aggregates={self.aggregates!r}, state={self.state}, index={self.index})"
        )


class AlertEvent:
    """An alert: the change of state a window causes (the WIT `alert`). Make one with
    `window.alert(state, value, message)`. The host takes the rule, series, field and bounds
    from the window; they are readable here too (`event.rule`, `event.series`, ...)."""

    __slots__ = ("window", "state", "value", "message")

    def __init__(self, window, state, value, message):
        self.window = window
        self.state = state
        self.value = value
        self.message = message

    @property
    def window_index(self):
        w = self.window
        return w if isinstance(w, int) else w.index

    def _from_window(self, name):
        w = self.window
        return None if isinstance(w, int) else getattr(w, name)

    rule = property(lambda self: self._from_window("rule"))
    series = property(lambda self: self._from_window("series"))
    field = property(lambda self: self._from_window("field"))
    window_start = property(lambda self: self._from_window("window_start"))
    window_end = property(lambda self: self._from_window("window_end"))

    def _key(self):
        return (self.window_index, self.state, self.value, self.message)

    def __eq__(self, other):
        if not isinstance(other, AlertEvent):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None

    def __repr__(self):
        return (
            f"AlertEvent(window={self.window_index}, state={self.state}, "
            f"value={self.value!r}, message={self.message!r})"
        )


def check_point(p, index):
    """Raises a `PluginError` naming output point `index` when `p` can't cross to the host."""
    if not isinstance(p, Point):
        raise PluginError(
            f"output {index} is a {type(p).__name__}, not a sluice_sdk.Point", index
        )
    if not isinstance(p.measurement, str):
        raise PluginError(f"output point {index}: measurement is not a str", index)
    if not p.fields:
        raise PluginError(
            f"output point {index} ({p.measurement}) has no field: a point keeps at least one",
            index,
        )

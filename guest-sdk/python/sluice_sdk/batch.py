"""The columnar batch the host hands filters and transforms, and a lazy per-point view.

Every column arrives as `bytes` (one copy across the boundary). `Batch` casts each column
once into a `memoryview` of numbers (`I` for u32 columns, `q` for timestamps, `d`/`q`/`Q`
over the field values) and `PointView` reads from them on demand: nothing is decoded that a
plugin does not read, and a field is found by comparing the key's bytes, not by decoding
every key.

Layout (see `batch` in wit/plugin.wit), all little-endian:
  text          every string, UTF-8, concatenated
  points        6 x u32 per point: measurement (start, len), first tag, tag count,
                first field, field count
  timestamps    1 x s64 per point
  tags          4 x u32 per tag: key (start, len), value (start, len)
  field_keys    2 x u32 per field: key (start, len)
  field_kinds   1 byte per field: 0 float, 1 integer, 2 unsigned, 3 boolean, 4 string
  field_values  8 bytes per field: f64 bits, s64, u64, 0/1, or start << 32 | len
A malformed batch never raises: numbers past the end of a column read as 0, rows past the
end of the tags or fields are cut, and a span outside the text (or not UTF-8) reads as "".
"""

import struct
import sys
from array import array
from itertools import repeat
from operator import itemgetter

from .errors import PluginError
from .model import (
    BOOLEAN,
    FLOAT,
    INTEGER,
    KIND_NAMES,
    STRING,
    UNSIGNED,
    Point,
    Unsigned,
    series_key,
)

_LITTLE = sys.byteorder == "little"


def _column(data, itemsize, fmt, rows=None):
    """`data` as a sequence of numbers of `fmt`: a memoryview cast in place when the bytes
    are whole rows of this machine's (little-endian) order; otherwise a copy, cut to whole
    numbers and zero-padded to `rows` numbers."""
    data = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
    n = len(data) // itemsize
    whole = n * itemsize == len(data)
    if _LITTLE and whole and (rows is None or n >= rows):
        return memoryview(data).cast(fmt)
    data = bytes(data[: n * itemsize])
    if rows is not None and n < rows:
        data += bytes((rows - n) * itemsize)
    if _LITTLE:
        return memoryview(data).cast(fmt)
    count = len(data) // itemsize
    return list(struct.unpack(f"<{count}{fmt}", data))


class RawBatch:
    """The seven columns of a WIT `batch`, as bytes. What `Batch.from_points` builds for
    tests; inside the component the generated `Batch` record plays this role."""

    __slots__ = (
        "text",
        "points",
        "timestamps",
        "tags",
        "field_keys",
        "field_kinds",
        "field_values",
    )

    def __init__(
        self,
        text=b"",
        points=b"",
        timestamps=b"",
        tags=b"",
        field_keys=b"",
        field_kinds=b"",
        field_values=b"",
    ):
        self.text = text
        self.points = points
        self.timestamps = timestamps
        self.tags = tags
        self.field_keys = field_keys
        self.field_kinds = field_kinds
        self.field_values = field_values

    def __repr__(self):
        inner = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"RawBatch({inner})"


_D = struct.Struct("<d").pack
_Q = struct.Struct("<Q").pack
_q = struct.Struct("<q").pack


def _encode_field(value, key, push):
    """(kind, the 8 bytes of field-values) of a field value."""
    t = type(value)
    if t is float:
        return FLOAT, _D(value)
    if t is bool:
        return BOOLEAN, _Q(1 if value else 0)
    if t is str:
        start, length = push(value)
        return STRING, _Q((start << 32) | length)
    if isinstance(value, Unsigned):
        return UNSIGNED, _Q(value)
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return INTEGER, _q(value)
        if 0 <= value < (1 << 64):
            return UNSIGNED, _Q(value)
        raise ValueError(f"field `{key}` = {value} fits neither s64 nor u64")
    if isinstance(value, float):
        return FLOAT, _D(value)
    if isinstance(value, str):
        start, length = push(str(value))
        return STRING, _Q((start << 32) | length)
    raise TypeError(f"field `{key}` = {value!r} is not a float, int, Unsigned, bool or str")


def encode_points(points, strict=False):
    """A `RawBatch` of `points`, byte for byte what the host sends (host/src/plugin/batch.rs):
    strings appended in the order measurement, tag key, tag value, ..., field key, (string
    value), ...; tags in the order given (the host sends them sorted by key: `from_points`
    sorts them). A transform's output crosses to the host this way.

    With `strict`, a point that can't be encoded raises a PluginError naming it (its index,
    and what is wrong); otherwise TypeError or ValueError."""
    text = bytearray()
    pts, ts, tags, fkeys, kinds, values = [], [], [], [], bytearray(), bytearray()

    def push(s):
        b = s.encode()
        start = len(text)
        text.extend(b)
        return start, len(b)

    n_tags = n_fields = 0
    for index, p in enumerate(points):
        try:
            ms, ml = push(p.measurement)
            pts += (ms, ml, n_tags, len(p.tags), n_fields, len(p.fields))
            n_tags += len(p.tags)
            n_fields += len(p.fields)
            t = p.timestamp
            if type(t) is not int:
                if isinstance(t, bool) or not isinstance(t, int):
                    raise TypeError(f"timestamp {t!r} is not an int")
                t = int(t)
            if not -(1 << 63) <= t < (1 << 63):
                raise ValueError(f"timestamp {t} is outside s64")
            ts.append(t)
            for k, v in p.tags.items():
                tags += push(k)
                tags += push(v)
            for k, v in p.fields.items():
                fkeys += push(k)
                kind, bits = _encode_field(v, k, push)
                kinds.append(kind)
                values += bits
        except (AttributeError, TypeError, ValueError, UnicodeEncodeError) as e:
            if not strict:
                raise
            what = getattr(p, "measurement", None)
            raise PluginError(
                f"output point {index} ({what!r}) can't cross to the host: {e}", index
            ) from None
    return RawBatch(
        text=bytes(text),
        points=struct.pack(f"<{len(pts)}I", *pts),
        timestamps=struct.pack(f"<{len(ts)}q", *ts),
        tags=struct.pack(f"<{len(tags)}I", *tags),
        field_keys=struct.pack(f"<{len(fkeys)}I", *fkeys),
        field_kinds=bytes(kinds),
        field_values=bytes(values),
    )


# Small cache of encoded keys: plugins look up the same few keys in every point.
_keys = {}


def _key_bytes(key):
    b = _keys.get(key)
    if b is None:
        b = key.encode()
        if len(_keys) < 1024:
            _keys[key] = b
    return b


class Batch:
    """A batch of points, columnar, as the host sent it. `len(batch)`, `batch[i]` (a
    `PointView`), `for point in batch`.

    Wraps the generated WIT `Batch` record (or a `RawBatch`); casting the columns happens
    once, here.
    """

    __slots__ = (
        "raw",
        "_n",
        "_text",
        "_tlen",
        "_pts",
        "_ts",
        "_tags",
        "_ntags",
        "_fk",
        "_kinds",
        "_nf",
        "_fd",
        "_fq",
        "_fu",
        "_nums",
        "_vals",
        "_tagvals",
        "_lookups",
    )

    def __init__(self, raw):
        self.raw = raw
        ts = raw.timestamps
        n = len(ts) // 8
        self._n = n
        text = raw.text
        if not isinstance(text, bytes):
            text = bytes(text)
        self._text = text
        self._tlen = len(text)
        self._ts = _column(ts, 8, "q")
        self._pts = _column(raw.points, 4, "I", 6 * n)
        self._tags = _column(raw.tags, 4, "I")
        self._ntags = len(raw.tags) // 16
        kinds = raw.field_kinds
        if not isinstance(kinds, bytes):
            kinds = bytes(kinds)
        self._kinds = kinds
        nf = len(kinds)
        self._nf = nf
        self._fk = _column(raw.field_keys, 4, "I", 2 * nf)
        fv = raw.field_values
        self._fd = _column(fv, 8, "d", nf)
        self._fq = _column(fv, 8, "q", nf)
        self._fu = _column(fv, 8, "Q", nf)
        # Per key, the value of every point (number(), field(), tag()), built once the key
        # has been asked of a few points: a whole-batch pass costs far less than a search
        # per point, but only if most points ask.
        self._nums = {}
        self._vals = {}
        self._tagvals = {}
        self._lookups = {}

    @classmethod
    def from_points(cls, points):
        """The batch the host would send for `points` (`sluice_sdk.Point`s; tags sorted by
        key as the host sorts them): for unit tests."""
        sorted_points = []
        for p in points:
            q = p.copy()
            q.tags = dict(sorted(q.tags.items()))
            sorted_points.append(q)
        return cls(encode_points(sorted_points))

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        n = self._n
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("point index out of range")
        return PointView((self, i))

    def __iter__(self):
        # Views are made in C (a tuple subclass): no Python code runs per point here.
        return map(PointView, zip(repeat(self), range(self._n)))

    def points(self):
        """The points, in order, as `PointView`s."""
        return iter(self)

    def to_points(self):
        """Owned copies of every point."""
        return [p.to_point() for p in self]

    def numbers(self, key):
        """Field `key` of every point as a float when it is a number (float, integer,
        unsigned), else None: `PointView.number` for the whole batch, in one pass."""
        nums = self._nums.get(key)
        if nums is None:
            nums = self._nums[key] = self._build_numbers(key)
        return list(nums)

    def values(self, key):
        """Field `key` of every point (float, int, `Unsigned`, bool, str or None)."""
        vals = self._vals.get(key)
        if vals is None:
            vals = self._vals[key] = self._build_values(key)
        return list(vals)

    def tag_values(self, key):
        """Tag `key` of every point (str or None)."""
        vals = self._tagvals.get(key)
        if vals is None:
            vals = self._tagvals[key] = self._build_tag_values(key)
        return list(vals)

    def _asked(self, what, key):
        """Counts a per-point lookup of `key`; True once it is worth a whole-batch pass."""
        k = (what, key)
        seen = self._lookups.get(k, 0) + 1
        self._lookups[k] = seen
        return seen >= 8 and len(self._lookups) < 256

    # Whole-batch passes.
    def _field_rows_of(self, key):
        """(rows, uniform): the row of field `key` in each point (-1: none)."""
        return _key_column(self, self._fk, 2, 4, self._nf, _key_bytes(key))

    def _build_numbers(self, key):
        rows, uniform = self._field_rows_of(key)
        n = self._n
        if uniform is not None:
            g, c = uniform
            if g < 0:
                return [None] * n
            end = n * c
            kinds = self._kinds[g:end:c]
            if kinds.count(FLOAT) == n:
                # Every point's field is a float: one C-level copy of the column.
                return self._fd[g:end:c].tolist()
        value = self._number_at
        return [value(j) if j >= 0 else None for j in rows]

    def _build_values(self, key):
        rows, uniform = self._field_rows_of(key)
        n = self._n
        if uniform is not None:
            g, c = uniform
            if g < 0:
                return [None] * n
            end = n * c
            kinds = self._kinds[g:end:c]
            if kinds.count(FLOAT) == n:
                return self._fd[g:end:c].tolist()
            if kinds.count(INTEGER) == n:
                return self._fq[g:end:c].tolist()
        value = self._value
        return [value(j) if j >= 0 else None for j in rows]

    def _build_tag_values(self, key):
        rows, uniform = _key_column(self, self._tags, 4, 2, self._ntags, _key_bytes(key))
        if uniform is not None and uniform[0] < 0:
            return [None] * self._n
        tg = self._tags
        s = self._str
        return [s(tg[4 * j + 2], tg[4 * j + 3]) if j >= 0 else None for j in rows]

    # Span and value decoding, shared by the views.
    def _str(self, start, length):
        end = start + length
        if end > self._tlen:
            return ""
        try:
            return self._text[start:end].decode()
        except UnicodeDecodeError:
            return ""

    def _value(self, j):
        kind = self._kinds[j]
        if kind == FLOAT:
            return self._fd[j]
        if kind == INTEGER:
            return self._fq[j]
        if kind == UNSIGNED:
            return Unsigned(self._fu[j])
        if kind == BOOLEAN:
            return self._fu[j] != 0
        if kind == STRING:
            bits = self._fu[j]
            return self._str(bits >> 32, bits & 0xFFFFFFFF)
        # An unknown kind reads as a float, as in the Rust SDK.
        return self._fd[j]

    def _number_at(self, j):
        kind = self._kinds[j]
        if kind == FLOAT:
            return self._fd[j]
        if kind == INTEGER:
            return float(self._fq[j])
        if kind == UNSIGNED:
            return float(self._fu[j])
        if kind > STRING:
            return self._fd[j]
        return None

    def _field_rows(self, i):
        pts = self._pts
        first = pts[6 * i + 4]
        end = first + pts[6 * i + 5]
        nf = self._nf
        if end > nf:
            end = nf
        if first > end:
            first = end
        return first, end

    def _tag_rows(self, i):
        pts = self._pts
        first = pts[6 * i + 2]
        end = first + pts[6 * i + 3]
        nt = self._ntags
        if end > nt:
            end = nt
        if first > end:
            first = end
        return first, end

    def _find_field(self, key, i):
        """The row of field `key` in point `i`, or -1."""
        k = 6 * i
        return self._find_row(self._fk, 2, self._pts[k + 4], self._pts[k + 5], self._nf, key)

    def _find_tag(self, key, i):
        """The row of tag `key` in point `i`, or -1."""
        k = 6 * i
        return self._find_row(self._tags, 4, self._pts[k + 2], self._pts[k + 3], self._ntags, key)

    def _find_row(self, column, width, first, count, rows, key):
        """The row among `first..first + count` (cut to `rows`) of `column` (`width`
        numbers a row, the key span first) whose key is `key`, or -1: compares the key's
        bytes in place (the length, then `startswith` at the span's offset); no key is
        decoded."""
        end = first + count
        if end > rows:
            end = rows
        kb = _keys.get(key)
        if kb is None:
            kb = _key_bytes(key)
        n = len(kb)
        text = self._text
        r = first
        while r < end:
            if column[width * r + 1] == n and text.startswith(kb, column[width * r]):
                return r
            r += 1
        return -1

    # Per-point lookups: the whole-batch column once the key is asked often enough.
    def _number(self, key, i):
        if self._asked("n", key):
            nums = self._nums.get(key)
            if nums is None:
                nums = self._nums[key] = self._build_numbers(key)
            return nums[i]
        j = self._find_field(key, i)
        return None if j < 0 else self._number_at(j)

    def _field(self, key, i):
        if self._asked("v", key):
            if key not in self._vals:
                self._vals[key] = self._build_values(key)
            return self._vals[key][i]
        j = self._find_field(key, i)
        return None if j < 0 else self._value(j)

    def _tag(self, key, i):
        if self._asked("t", key):
            if key not in self._tagvals:
                self._tagvals[key] = self._build_tag_values(key)
            return self._tagvals[key][i]
        j = self._find_tag(key, i)
        if j < 0:
            return None
        tg = self._tags
        return self._str(tg[4 * j + 2], tg[4 * j + 3])


def _key_column(b, rows, stride, at, total, kb):
    """For each point of batch `b`, the first of its rows (of a tags or field-keys column
    `rows`, `stride` numbers per row, key span first; the point's first row and count at
    `at`, `at + 1` of its six numbers) whose key is `kb`; -1 when none is. Returns (that
    list, (g, c)) where, when not None, every point has `c` rows laid out one point after
    the other and the key is row `g` of each (-1: of none).

    A batch whose points all have the same number of rows with the same key lengths (the
    usual batch: one input, one schema) is checked with C-level passes over whole columns;
    any other batch with a loop over the points."""
    uniform = _uniform(b, rows, stride, at, total, kb)
    if uniform is not None:
        g, c = uniform
        if g < 0:
            return [-1] * b._n, uniform
        return range(g, b._n * c, c), uniform
    n = len(kb)
    out = [-1] * b._n
    pts = b._pts
    text = b._text
    i = 0
    for first, cnt in zip(pts[at::6].tolist(), pts[at + 1 :: 6].tolist()):
        r = first
        end = first + cnt
        if end > total:
            end = total
        while r < end:
            k = stride * r
            if rows[k + 1] == n and text.startswith(kb, rows[k]):
                out[i] = r
                break
            r += 1
        i += 1
    return out, None


def _uniform(b, rows, stride, at, total, kb):
    """(g, c) when every point has `c` rows, point i's rows being i*c .. i*c+c-1, row k of
    every point has the same key length, and the key is row `g` of every point (g = -1: of
    none); None otherwise."""
    npts = b._n
    if npts == 0 or not isinstance(rows, memoryview):
        return None
    pts = b._pts
    counts = pts[at + 1 :: 6]
    c = counts[0]
    if npts * c > total or counts.tolist().count(c) != npts:
        return None
    if c == 0:
        return (-1, 0)
    # Firsts 0, c, 2c, ...: compared in C against an array, no int objects.
    if pts[at::6] != memoryview(array("I", range(0, npts * c, c))):
        return None
    end = stride * npts * c
    lens = rows[1:end:stride].tolist()
    first_lens = lens[:c]
    if lens != first_lens * npts:
        return None
    n = len(kb)
    text = b._text
    for g in range(c):
        if first_lens[g] != n:
            continue
        starts = rows[stride * g : end : stride * c].tolist()
        # A key span of length n that starts with kb is kb.
        hits = list(map(text.startswith, repeat(kb), starts)).count(True)
        if hits == npts:
            return (g, c)
        if hits:
            return None
    return (-1, c)


class PointView(tuple):
    """One point of a batch, read in place: only what is read is decoded.

    `measurement`, `timestamp`, `tag(key)`, `tags()`, `field(key)`, `number(key)`,
    `field_kind(key)`, `fields()`, `fields_typed()`, `to_point()`, `series_key()`, `index`.
    Field values: float, int, `Unsigned` (an int), bool or str.

    (A view is a (batch, index) tuple, so the SDK makes one per point without running
    Python code.)
    """

    __slots__ = ()

    batch = property(itemgetter(0))
    index = property(itemgetter(1))

    @property
    def measurement(self):
        b, i = self
        pts = b._pts
        return b._str(pts[6 * i], pts[6 * i + 1])

    @property
    def timestamp(self):
        b, i = self
        return b._ts[i]

    def number(self, key):
        """Field `key` as a float when it is a number (float, integer or unsigned); None when
        it is missing, a boolean or a string. The Rust SDK's `field(key).as_f64()`."""
        b, i = self
        nums = b._nums.get(key)
        if nums is not None:
            return nums[i]
        return b._number(key, i)

    def field(self, key):
        """The value of field `key` (float, int, `Unsigned`, bool or str), or None."""
        b, i = self
        vals = b._vals.get(key)
        if vals is not None:
            return vals[i]
        return b._field(key, i)

    def tag(self, key):
        """The value of tag `key`, or None."""
        b, i = self
        vals = b._tagvals.get(key)
        if vals is not None:
            return vals[i]
        return b._tag(key, i)

    def field_kind(self, key):
        """The kind of field `key`: "float", "integer", "unsigned", "boolean", "string";
        None when there is no such field."""
        b, i = self
        j = b._find_field(key, i)
        if j < 0:
            return None
        kind = b._kinds[j]
        return KIND_NAMES[kind] if kind < len(KIND_NAMES) else "float"

    def has_field(self, key):
        b, i = self
        return b._find_field(key, i) >= 0

    def field_keys(self):
        """The field keys, in order."""
        b, i = self
        first, end = b._field_rows(i)
        fk = b._fk
        return [b._str(fk[2 * j], fk[2 * j + 1]) for j in range(first, end)]

    def fields(self):
        """Every field, key -> value, in order."""
        b, i = self
        first, end = b._field_rows(i)
        fk = b._fk
        return {b._str(fk[2 * j], fk[2 * j + 1]): b._value(j) for j in range(first, end)}

    def fields_typed(self):
        """Every field as (key, kind name, value), in order."""
        b, i = self
        first, end = b._field_rows(i)
        fk = b._fk
        out = []
        for j in range(first, end):
            kind = b._kinds[j]
            name = KIND_NAMES[kind] if kind < len(KIND_NAMES) else "float"
            out.append((b._str(fk[2 * j], fk[2 * j + 1]), name, b._value(j)))
        return out

    def tags(self):
        """Every tag, key -> value, sorted by key (as the host sends them)."""
        b, i = self
        first, end = b._tag_rows(i)
        tg = b._tags
        s = b._str
        return {
            s(tg[4 * j], tg[4 * j + 1]): s(tg[4 * j + 2], tg[4 * j + 3])
            for j in range(first, end)
        }

    def series_key(self):
        """`cpu,host=a`, escaped: see `sluice_sdk.series_key`."""
        return series_key(self.measurement, self.tags())

    def to_point(self):
        """An owned, mutable copy: a `sluice_sdk.Point`."""
        return Point(
            self.measurement,
            tags=self.tags(),
            fields=self.fields(),
            timestamp=self.timestamp,
        )

    def __repr__(self):
        return f"PointView({self.index}: {self.to_point()!r})"

    # A view is not a tuple to the outside: compare by identity of batch and index.
    def __eq__(self, other):
        return isinstance(other, PointView) and self[0] is other[0] and self[1] == other[1]

    def __hash__(self):
        return hash((id(self[0]), self[1]))

"""The batch layout and the per-point view."""

import math
import struct
import unittest

from sluice_sdk import Batch, Point, PointView, RawBatch, Unsigned
from sluice_sdk.batch import encode_points


def le32(*numbers):
    return struct.pack(f"<{len(numbers)}I", *numbers)


def le64(*numbers):
    return struct.pack(f"<{len(numbers)}Q", *numbers)


def sample_points():
    """Every field kind, the integer extremes, non-ASCII strings, a point without tags."""
    return [
        Point(
            "cpu",
            tags={"region": "eu", "host": "web-1"},
            fields={
                "usage": 12.5,
                "count": -(1 << 63),
                "max": (1 << 63) - 1,
                "bytes": Unsigned((1 << 64) - 1),
                "up": True,
                "down": False,
                "note": "ok",
            },
            timestamp=1_700_000_000_000_000_000,
        ),
        Point(
            "température",
            tags={"ville": "Zürich", "城市": "東京"},
            fields={"°C": -0.0, "msg": "ünïcødé 🚀, with = and \\", "empty": ""},
            timestamp=-(1 << 63),
        ),
        Point("", fields={"v": Unsigned(0)}, timestamp=(1 << 63) - 1),
        Point(
            "mem",
            fields={"inf": -math.inf, "pinf": math.inf, "tiny": 5e-324, "neg": -7},
            timestamp=-1,
        ),
    ]


class LayoutTest(unittest.TestCase):
    def test_bytes_are_the_hosts_layout(self):
        # The example of host/src/plugin/batch.rs: `cpu,host=é u=1.5,s="x",n=-2i 7` and
        # `mem free=3u 8`.
        raw = encode_points(
            [
                Point("cpu", {"host": "é"}, {"u": 1.5, "s": "x", "n": -2}, 7),
                Point("mem", {}, {"free": Unsigned(3)}, 8),
            ]
        )
        self.assertEqual(raw.text, "cpuhostéusxnmemfree".encode())
        self.assertEqual(raw.points, le32(0, 3, 0, 1, 0, 3, 13, 3, 1, 0, 3, 1))
        self.assertEqual(raw.tags, le32(3, 4, 7, 2))  # é is two bytes
        self.assertEqual(raw.timestamps, le64(7, 8))
        self.assertEqual(raw.field_keys, le32(9, 1, 10, 1, 12, 1, 16, 4))
        self.assertEqual(raw.field_kinds, bytes([0, 4, 1, 2]))
        self.assertEqual(
            raw.field_values,
            struct.pack("<dQqQ", 1.5, (11 << 32) | 1, -2, 3),
        )

    def test_empty_batch(self):
        b = Batch.from_points([])
        self.assertEqual(len(b), 0)
        self.assertEqual(list(b), [])
        self.assertEqual(b.to_points(), [])
        self.assertEqual(b.numbers("value"), [])

    def test_points_round_trip(self):
        points = sample_points()
        b = Batch.from_points(points)
        self.assertEqual(len(b), 4)
        back = b.to_points()
        # Tags come back sorted by key, as the host sends them.
        self.assertEqual(list(back[0].tags), ["host", "region"])
        for got, want in zip(back, points):
            self.assertEqual(got, want)
        # -0.0 == 0.0: check the sign too.
        self.assertEqual(math.copysign(1, b[1].field("°C")), -1.0)

    def test_view_reads_each_part(self):
        b = Batch.from_points(sample_points())
        cpu, t, unnamed, mem = list(b)
        self.assertEqual(cpu.measurement, "cpu")
        self.assertEqual(cpu.timestamp, 1_700_000_000_000_000_000)
        self.assertEqual(cpu.tags(), {"host": "web-1", "region": "eu"})
        self.assertEqual(list(cpu.tags()), ["host", "region"])
        self.assertEqual(cpu.tag("region"), "eu")
        self.assertIsNone(cpu.tag("ville"), "another point's tag")
        self.assertEqual(cpu.field("usage"), 12.5)
        self.assertEqual(cpu.field("count"), -(1 << 63))
        self.assertEqual(cpu.field("max"), (1 << 63) - 1)
        self.assertEqual(cpu.field("bytes"), (1 << 64) - 1)
        self.assertIsInstance(cpu.field("bytes"), Unsigned)
        self.assertIs(cpu.field("up"), True)
        self.assertIs(cpu.field("down"), False)
        self.assertEqual(cpu.field("note"), "ok")
        self.assertIsNone(cpu.field("msg"), "another point's field")
        self.assertEqual(
            cpu.field_keys(), ["usage", "count", "max", "bytes", "up", "down", "note"]
        )
        self.assertEqual(t.measurement, "température")
        self.assertEqual(t.timestamp, -(1 << 63))
        self.assertEqual(t.tag("ville"), "Zürich")
        self.assertEqual(t.tag("城市"), "東京")
        self.assertEqual(t.field("msg"), "ünïcødé 🚀, with = and \\")
        self.assertEqual(t.field("empty"), "")
        self.assertEqual(unnamed.measurement, "")
        self.assertEqual(unnamed.timestamp, (1 << 63) - 1)
        self.assertEqual(unnamed.tags(), {})
        self.assertEqual(unnamed.fields(), {"v": 0})
        self.assertEqual(mem.field("inf"), -math.inf)
        self.assertEqual(mem.field("pinf"), math.inf)
        self.assertEqual(mem.field("tiny"), 5e-324)
        self.assertEqual(mem.field("neg"), -7)
        self.assertEqual(mem.index, 3)

    def test_kinds_and_numbers(self):
        b = Batch.from_points(sample_points())
        cpu = b[0]
        kinds = {k: kind for k, kind, _ in cpu.fields_typed()}
        self.assertEqual(
            kinds,
            {
                "usage": "float",
                "count": "integer",
                "max": "integer",
                "bytes": "unsigned",
                "up": "boolean",
                "down": "boolean",
                "note": "string",
            },
        )
        self.assertEqual(cpu.field_kind("bytes"), "unsigned")
        self.assertIsNone(cpu.field_kind("nope"))
        # number(): numbers as float, None for booleans, strings and missing fields.
        self.assertEqual(cpu.number("usage"), 12.5)
        self.assertEqual(cpu.number("count"), float(-(1 << 63)))
        self.assertEqual(cpu.number("bytes"), float((1 << 64) - 1))
        self.assertIsInstance(cpu.number("max"), float)
        self.assertIsNone(cpu.number("up"))
        self.assertIsNone(cpu.number("note"))
        self.assertIsNone(cpu.number("nope"))
        self.assertTrue(cpu.has_field("note"))
        self.assertFalse(cpu.has_field("not"))

    def test_u64_above_2_63_stays_unsigned_through_to_point(self):
        big = (1 << 63) + 5
        b = Batch.from_points([Point("m", fields={"a": big, "b": Unsigned(1)})])
        p = b[0].to_point()
        self.assertEqual(p.fields["a"], big)
        self.assertIsInstance(p.fields["a"], Unsigned)
        self.assertIsInstance(p.fields["b"], Unsigned)
        self.assertEqual(b[0].field_kind("b"), "unsigned")

    def test_nan_keeps_its_bits(self):
        nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
        b = Batch.from_points([Point("m", fields={"v": nan})])
        v = b[0].field("v")
        self.assertTrue(math.isnan(v))
        self.assertEqual(struct.pack("<d", v), struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))
        self.assertTrue(math.isnan(b[0].number("v")))

    def test_indexing_and_iteration(self):
        b = Batch.from_points(sample_points())
        self.assertEqual(b[-1].measurement, "mem")
        with self.assertRaises(IndexError):
            b[4]
        self.assertEqual([p.index for p in b], [0, 1, 2, 3])
        self.assertIsInstance(b[0], PointView)
        self.assertEqual(b[0].series_key(), "cpu,host=web-1,region=eu")
        self.assertIn("cpu", repr(b[0]))


class ManyPointsTest(unittest.TestCase):
    """Lookups repeated over many points switch to the whole-batch column: same answers."""

    def check(self, points):
        b = Batch.from_points(points)
        fresh = Batch.from_points(points)
        expect_value = [p.fields.get("value") for p in points]
        expect_host = [dict(p.tags).get("host") for p in points]
        self.assertEqual([p.field("value") for p in b], expect_value)
        self.assertEqual([p.tag("host") for p in b], expect_host)
        # The same answers from the per-point search of a batch that never built a column.
        self.assertEqual([fresh._find_field("value", i) >= 0 for i in range(len(fresh))],
                         [v is not None for v in expect_value])
        self.assertEqual(Batch.from_points(points).values("value"), expect_value)
        self.assertEqual(Batch.from_points(points).tag_values("host"), expect_host)
        expect_num = [None if v is None or isinstance(v, (bool, str)) else float(v)
                      for v in expect_value]
        self.assertEqual([p.number("value") for p in Batch.from_points(points)], expect_num)
        self.assertEqual(Batch.from_points(points).numbers("value"), expect_num)
        kinds = [type(p.field("value")) for p in Batch.from_points(points)]
        self.assertEqual(kinds, [type(v) for v in expect_value])
        return b

    def test_uniform_batch(self):
        pts = [
            Point("cpu", {"host": f"h{i}", "dc": "eu"}, {"usage": 1.0, "value": float(i)}, i)
            for i in range(50)
        ]
        b = self.check(pts)
        self.assertEqual(b.numbers("value"), [float(i) for i in range(50)])

    def test_key_at_different_places(self):
        pts = []
        for i in range(60):
            if i % 3 == 0:
                f = {"value": i, "x": 1.0}
            elif i % 3 == 1:
                f = {"x": 1.0, "value": -i}
            else:
                f = {"x": 1.0, "vaLue": 2.0}  # same length, other key: not a match
            pts.append(Point("m", {"host": "a"} if i % 2 else {}, f, i))
        self.check(pts)

    def test_same_length_other_keys_then_the_key(self):
        pts = [Point("m", {"hast": "x", "host": str(i)}, {"valve": 1, "value": i}) for i in range(40)]
        self.check(pts)

    def test_first_of_a_repeated_key_wins(self):
        # Line protocol lets a point repeat a field key; the first wins, as in the Rust SDK.
        raw = encode_points([Point("m", {}, {"value": 1.0, "other": 2.0}) for _ in range(20)])
        # Rename `other` to `value` in place: both keys of every point are now `value`.
        text = raw.text.replace(b"other", b"value")
        b = Batch(RawBatch(text, raw.points, raw.timestamps, raw.tags, raw.field_keys,
                           raw.field_kinds, raw.field_values))
        self.assertEqual([p.field("value") for p in b], [1.0] * 20)
        self.assertEqual(b[0].fields(), {"value": 2.0})  # the dict keeps the last

    def test_mixed_field_counts(self):
        pts = [Point("m", {}, {"a": 1} if i % 2 else {"a": 1, "value": i}) for i in range(30)]
        self.check(pts)

    def test_absent_everywhere(self):
        pts = [Point("m", {}, {"a": 1}) for _ in range(30)]
        b = self.check(pts)
        self.assertEqual(b.numbers("value"), [None] * 30)


class MalformedTest(unittest.TestCase):
    """The host never sends these, but a bad batch must read as empty, not raise."""

    def test_spans_outside_the_text_read_as_empty(self):
        raw = RawBatch(
            text=b"cpu",
            points=le32(0, 99, 0, 1, 0, 2),
            timestamps=le64(5),
            tags=le32(100, 2, 0, 3),
            field_keys=le32(0, 3, 500, 1),
            field_kinds=bytes([4, 0]),
            field_values=le64((1000 << 32) | 4, 0),
        )
        p = Batch(raw)[0]
        self.assertEqual(p.measurement, "")
        self.assertEqual(p.tags(), {"": "cpu"})
        self.assertEqual(p.field("cpu"), "")
        self.assertEqual(p.fields(), {"cpu": "", "": 0.0})
        self.assertEqual(p.timestamp, 5)

    def test_invalid_utf8_reads_as_empty(self):
        raw = RawBatch(
            text=b"\xff\xfeab",
            points=le32(0, 2, 0, 0, 0, 1),
            timestamps=le64(1),
            field_keys=le32(2, 2),
            field_kinds=bytes([4]),
            field_values=le64((0 << 32) | 2),
        )
        p = Batch(raw)[0]
        self.assertEqual(p.measurement, "")
        self.assertEqual(p.field("ab"), "")

    def test_rows_past_the_columns_are_cut(self):
        raw = RawBatch(
            text=b"mkv",
            points=le32(0, 1, 0, 1000, 0, 4_000_000_000),
            timestamps=le64(1),
            tags=le32(1, 1, 2, 1),
            field_keys=le32(1, 1),
            field_kinds=bytes([1]),
            field_values=le64(42),
        )
        p = Batch(raw)[0]
        self.assertEqual(p.tags(), {"k": "v"})
        self.assertEqual(p.fields(), {"k": 42})
        self.assertEqual(p.field("k"), 42)
        self.assertIsNone(p.field("x"))

    def test_short_and_ragged_columns(self):
        # Points column shorter than the timestamps say; a ragged field-values column.
        raw = RawBatch(
            text=b"m",
            points=le32(0, 1, 0, 0, 0, 1)[:-3],
            timestamps=le64(1, 2),
            field_keys=le32(0, 1),
            field_kinds=bytes([0, 1]),
            field_values=le64(0)[:5],
        )
        b = Batch(raw)
        self.assertEqual(len(b), 2)
        self.assertEqual(b[0].measurement, "m")
        self.assertEqual(b[0].fields(), {})  # field count read as 0
        self.assertEqual(b[1].measurement, "")
        self.assertEqual(b[1].fields(), {})

    def test_unknown_kind_reads_as_float(self):
        raw = RawBatch(
            text=b"mv",
            points=le32(0, 1, 0, 0, 0, 1),
            timestamps=le64(1),
            field_keys=le32(1, 1),
            field_kinds=bytes([9]),
            field_values=struct.pack("<d", 2.5),
        )
        p = Batch(raw)[0]
        self.assertEqual(p.field("v"), 2.5)
        self.assertEqual(p.number("v"), 2.5)
        self.assertEqual(p.field_kind("v"), "float")

    def test_many_points_with_bad_spans(self):
        pts = [Point("m", {"host": "a"}, {"value": 1.0}) for _ in range(20)]
        raw = encode_points(pts)
        # Every tag-key span points past the text.
        tags = struct.unpack(f"<{len(raw.tags) // 4}I", raw.tags)
        bad = [10**6 if i % 4 == 0 else n for i, n in enumerate(tags)]
        b = Batch(RawBatch(raw.text, raw.points, raw.timestamps, le32(*bad),
                           raw.field_keys, raw.field_kinds, raw.field_values))
        self.assertEqual([p.tag("host") for p in b], [None] * 20)
        self.assertEqual([p.field("value") for p in b], [1.0] * 20)


if __name__ == "__main__":
    unittest.main()

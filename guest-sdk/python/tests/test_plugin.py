"""The plugin base classes, the runners of sluice_sdk.testing, Point and the helpers."""

import math
import unittest

from sluice_sdk import (
    Alert,
    AlertEvent,
    AlertState,
    Filter,
    PluginError,
    Point,
    Series,
    Transform,
    Unsigned,
    Window,
    as_number,
    export,
    format_float,
    kind_of,
    log,
    params,
    series_key,
    state,
    testing,
)


class MaxV(Filter):
    """Keeps points whose `v` is at most `max`; points without `v` are kept."""

    def setup(self):
        self.max = params.get_float("max", 10.0)
        self.seen = 0

    def keep(self, point):
        v = point.number("v")
        return v is None or v <= self.max


class Script(Transform):
    """Per point: `drop` returns None, `twice` two copies, `gen` yields, `fail` fails with
    no index, `fail-at` fails naming item 7; anything else gets tag `seen`."""

    def transform(self, point):
        m = point.measurement
        if m == "drop":
            return None
        if m == "twice":
            return [point, point.copy()]
        if m == "gen":
            return self.gen(point)
        if m == "fail":
            raise PluginError("no index")
        if m == "fail-at":
            raise PluginError("own index", 7)
        if m == "boom":
            return 1 / 0
        return point.with_tag("seen", "yes")

    def gen(self, point):
        yield point
        yield Point("derived", fields={"n": Unsigned(1)}, timestamp=point.timestamp)


class Above90(Alert):
    def evaluate(self, w):
        mx = w.aggregate("max")
        if mx is None or not (mx > 90.0 and w.state != AlertState.CRITICAL):
            return None
        return w.alert(AlertState.CRITICAL, mx, f"{w.series.key()} max {format_float(mx)}")


def point(measurement, **fields):
    return Point(measurement, fields=fields or {"x": 1}, timestamp=1)


class FilterTest(unittest.TestCase):
    def test_one_verdict_per_point_in_order(self):
        pts = [
            Point("a", fields={"v": 5.0}),
            Point("b", fields={"v": Unsigned(50)}),
            Point("c", fields={"other": 1}),
            Point("d", fields={"v": -1}),
            Point("e", fields={"v": "100"}),
        ]
        self.assertEqual(testing.run_filter(MaxV, pts), [True, False, True, True, True])
        self.assertEqual(
            testing.run_filter(MaxV, pts, params={"max": "-5"}),
            [False, False, True, False, True],
        )
        self.assertEqual(testing.run_filter(MaxV, []), [])

    def test_bad_param_fails_the_batch(self):
        with self.assertRaises(PluginError) as cm:
            testing.run_filter(MaxV, [point("a")], params={"max": "x"})
        self.assertEqual(cm.exception.message, "parameter `max` = `x`: invalid float literal")

    def test_truthy_verdicts_become_bools_and_wrong_lengths_fail(self):
        class Truthy(Filter):
            def keep(self, p):
                return p.measurement  # "" is falsy

        self.assertEqual(testing.run_filter(Truthy, [point("a"), point("")]), [True, False])

        class Short(Filter):
            def filter(self, batch):
                return [True]

        with self.assertRaises(PluginError) as cm:
            testing.run_filter(Short, [point("a"), point("b")])
        self.assertEqual(cm.exception.message, "filter returned 1 verdicts for 2 points")

    def test_unexpected_exception_is_a_plugin_error_with_its_type(self):
        class Boom(Filter):
            def keep(self, p):
                return {}["missing"]

        with self.assertRaises(PluginError) as cm:
            testing.run_filter(Boom, [point("a")])
        self.assertTrue(cm.exception.message.startswith("plugin raised KeyError: 'missing' at "))

    def test_keep_must_be_overridden(self):
        with self.assertRaises(PluginError) as cm:
            testing.run_filter(Filter, [point("a")])
        self.assertIn("NotImplementedError", cm.exception.message)


class TransformTest(unittest.TestCase):
    def test_outputs_concatenate_in_order(self):
        pts = [point("a"), point("drop"), point("twice"), point("gen"), point("b")]
        out = testing.run_transform(Script, pts)
        self.assertEqual(
            [p.measurement for p in out], ["a", "twice", "twice", "gen", "derived", "b"]
        )
        self.assertEqual(out[0], Point("a", {"seen": "yes"}, {"x": 1}, 1))
        self.assertEqual(out[1], point("twice"), "points reach transform as sent")
        self.assertIsInstance(out[4].fields["n"], Unsigned)

    def test_error_without_index_gets_the_points_index(self):
        with self.assertRaises(PluginError) as cm:
            testing.run_transform(Script, [point("a"), point("b"), point("fail"), point("c")])
        self.assertEqual(cm.exception, PluginError("no index", 2))
        with self.assertRaises(PluginError) as cm:
            testing.run_transform(Script, [point("a"), point("fail-at")])
        self.assertEqual(cm.exception, PluginError("own index", 7))

    def test_unencodable_outputs_are_named(self):
        class BadValue(Transform):
            def transform(self, p):
                if p.measurement == "b":
                    p.fields["x"] = [1]
                return p

        with self.assertRaises(PluginError) as cm:
            testing.run_transform(BadValue, [point("a"), point("b")])
        self.assertEqual(cm.exception.index, 1)
        self.assertIn("field `x` = [1] is not a float", cm.exception.message)

        class Huge(Transform):
            def transform(self, p):
                p.fields["x"] = 1 << 64
                return p

        with self.assertRaises(PluginError) as cm:
            testing.run_transform(Huge, [point("a")])
        self.assertIn("fits neither s64 nor u64", cm.exception.message)

        class BadTs(Transform):
            def transform(self, p):
                p.timestamp = 1.5
                return p

        with self.assertRaises(PluginError) as cm:
            testing.run_transform(BadTs, [point("a")])
        self.assertIn("timestamp 1.5 is not an int", cm.exception.message)

    def test_bad_outputs_are_named(self):
        class NoFields(Transform):
            def transform(self, p):
                p.fields.clear()
                return p

        with self.assertRaises(PluginError) as cm:
            testing.run_transform(NoFields, [point("a")])
        self.assertIn("has no field", cm.exception.message)
        self.assertEqual(cm.exception.index, 0)

        class NotAPoint(Transform):
            def transform(self, p):
                return [{"measurement": "a"}]

        with self.assertRaises(PluginError) as cm:
            testing.run_transform(NotAPoint, [point("a")])
        self.assertIn("not a sluice_sdk.Point", cm.exception.message)

    def test_failed_batch_leaves_state_untouched(self):
        class Counts(Transform):
            def transform(self, p):
                state.set("last", p.measurement.encode())
                if p.measurement == "fail":
                    raise PluginError("no")
                return p

        host = testing.FakeHost(state={"last": b"before"})
        with self.assertRaises(PluginError):
            testing.run_transform(Counts, [point("a"), point("fail")], host=host)
        self.assertEqual(host.state, {"last": b"before"})
        testing.run_transform(Counts, [point("a"), point("b")], host=host)
        self.assertEqual(host.state, {"last": b"b"})


def window(host, mx, st):
    return testing.window({"mean": 50.0, "max": mx}, state=st, tags={"host": host}, rule="hot",
                          field="usage")


class AlertTest(unittest.TestCase):
    def test_only_state_changes_in_window_order(self):
        windows = [
            window("a", 95.0, AlertState.OK),
            window("b", 10.0, AlertState.OK),
            window("c", 99.0, AlertState.CRITICAL),
            window("d", 91.5, AlertState.WARNING),
        ]
        alerts = testing.run_alert(Above90, windows)
        self.assertEqual([a.series.tags["host"] for a in alerts], ["a", "d"])
        self.assertEqual(alerts[1].value, 91.5)
        self.assertEqual(alerts[1].message, "cpu,host=d max 91.5")
        self.assertEqual(alerts[1].rule, "hot")
        self.assertEqual(alerts[1].field, "usage")
        self.assertEqual(alerts[1].state, AlertState.CRITICAL)
        self.assertEqual([a.window_index for a in alerts], [0, 3])
        self.assertEqual(testing.run_alert(Above90, []), [])

    def test_alert_naming_no_window_fails(self):
        class Wrong(Alert):
            def evaluate(self, w):
                return AlertEvent(5, AlertState.OK, 1.0, "x")

        with self.assertRaises(PluginError) as cm:
            testing.run_alert(Wrong, [window("a", 1.0, AlertState.OK)])
        self.assertEqual(cm.exception, PluginError("alert 0 names window 5, not one of the 1 windows", 0))

    def test_sequence_carries_the_state(self):
        class Flip(Alert):
            def evaluate(self, w):
                v = w.aggregate("mean")
                nxt = AlertState.CRITICAL if v > 1 else AlertState.OK
                return None if nxt == w.state else w.alert(nxt, v, str(nxt))

        got = testing.run_alert_sequence(Flip, [0, 2, 3, 0, 0, 5])
        self.assertEqual([(v, a.state) for v, a in got],
                         [(2, AlertState.CRITICAL), (0, AlertState.OK), (5, AlertState.CRITICAL)])


class ModelTest(unittest.TestCase):
    def test_format_float_prints_as_rust(self):
        cases = [
            (85.0, "85"), (93.2, "93.2"), (0.1, "0.1"), (-0.0, "-0"), (0.0, "0"),
            (1e21, "1000000000000000000000"), (1e-7, "0.0000001"), (1.5e-10, "0.00000000015"),
            (1e16, "10000000000000000"), (123456789.125, "123456789.125"), (math.nan, "NaN"),
            (math.inf, "inf"), (-math.inf, "-inf"), (-1.25e-5, "-0.0000125"),
            (5e-324, "0." + "0" * 323 + "5"), (75.0, "75"), (1.7976931348623157e308, "17976931348623157" + "0" * 292),
        ]
        for v, s in cases:
            self.assertEqual(format_float(v), s, v)
        self.assertEqual(format_float(3), "3")

    def test_kinds(self):
        self.assertEqual(kind_of(1.0), "float")
        self.assertEqual(kind_of(True), "boolean")
        self.assertEqual(kind_of(-1), "integer")
        self.assertEqual(kind_of(1 << 63), "unsigned")
        self.assertEqual(kind_of(Unsigned(1)), "unsigned")
        self.assertIsNone(kind_of(1 << 64))
        self.assertIsNone(kind_of(-(1 << 63) - 1))
        self.assertEqual(kind_of("s"), "string")
        self.assertIsNone(kind_of(None))
        with self.assertRaises(ValueError):
            Unsigned(-1)
        with self.assertRaises(ValueError):
            Unsigned(1 << 64)
        self.assertEqual(as_number(Unsigned(3)), 3.0)
        self.assertIsNone(as_number(True))
        self.assertIsNone(as_number("1"))

    def test_point_helpers_and_equality(self):
        p = Point("cpu", timestamp=5).with_tag("b", "2").with_tag("a", "1").with_field("v", 1)
        self.assertEqual(p.tag("a"), "1")
        self.assertEqual(p.series_key(), "cpu,a=1,b=2")
        self.assertEqual(p.series(), Series("cpu", {"a": "1", "b": "2"}))
        p.set_tag("c", "3")
        self.assertEqual(p.remove_tag("c"), "3")
        self.assertIsNone(p.remove_tag("c"))
        p.set_field("w", 2.0)
        self.assertEqual(p.number("v"), 1.0)
        self.assertEqual(p.remove_field("w"), 2.0)
        q = p.copy()
        self.assertEqual(p, q)
        q.fields["v"] = Unsigned(1)
        self.assertNotEqual(p, q, "an unsigned 1 is not an integer 1")
        q.fields["v"] = 1.0
        self.assertNotEqual(p, q, "a float 1 is not an integer 1")

    def test_series_key_escapes(self):
        self.assertEqual(series_key("a,b=c\\d", {"k,=\\": "v=,\\"}), "a\\,b\\=c\\\\d,k\\,\\=\\\\=v\\=\\,\\\\")
        self.assertEqual(series_key("disk io", {"path": "/ a"}), "disk io,path=/ a")
        self.assertEqual(
            series_key("température", {"城市": "東京🚀", "ville": "Zürich"}),
            "température,ville=Zürich,城市=東京🚀",
        )
        self.assertNotEqual(series_key("cpu,host=a", {}), series_key("cpu", {"host": "a"}))

    def test_window_and_alert_event(self):
        w = Window(rule="r", series=Series("m", {"h": "a"}), field="f", window_start=1,
                   window_end=2, aggregates={"mean": 1.5})
        self.assertEqual(w.aggregate("mean"), 1.5)
        self.assertIsNone(w.aggregate("max"))
        a = w.alert(AlertState.WARNING, 1.5, "msg")
        self.assertEqual(a, AlertEvent(0, AlertState.WARNING, 1.5, "msg"))
        self.assertEqual((a.rule, a.series, a.field, a.window_start, a.window_end),
                         ("r", Series("m", {"h": "a"}), "f", 1, 2))
        self.assertEqual(AlertEvent(3, AlertState.OK, 1.0, "m").window_index, 3)
        self.assertIsNone(AlertEvent(3, AlertState.OK, 1.0, "m").rule)
        self.assertIn("msg", repr(a))

    def test_plugin_error(self):
        e = PluginError("bad", 3)
        self.assertEqual((e.message, e.index), ("bad", 3))
        self.assertEqual(str(PluginError("bad")), "bad")
        self.assertIn("index=3", repr(e))


class ExportTest(unittest.TestCase):
    def test_export_natively_gives_a_class_with_the_world_method(self):
        self.assertTrue(hasattr(export(MaxV)(), "filter"))
        self.assertTrue(hasattr(export(Script)(), "transform"))
        self.assertTrue(hasattr(export(Above90)(), "evaluate"))
        self.assertIs(export(MaxV).plugin, MaxV)
        with self.assertRaises(TypeError):
            export(int)

    def test_log_from_a_plugin(self):
        class Logs(Filter):
            def filter(self, batch):
                log.info("filtered a batch", points=len(batch))
                return [True] * len(batch)

        host = testing.FakeHost()
        testing.run_filter(Logs, [point("a"), point("b")], host=host)
        self.assertEqual(host.logs, [("info", "filtered a batch", {"points": "2"})])


if __name__ == "__main__":
    unittest.main()

"""params, log, lookup, state and the testing host."""

import math
import struct
import unittest

from sluice_sdk import PluginError, log, lookup, params, state, testing


class ParamsTest(unittest.TestCase):
    def setUp(self):
        self.host = testing.install(
            params={
                "max": " 2.5\t",
                "n": "\n42 ",
                "bad": "abc",
                "int_float": " 1.5 ",
                "empty": "   ",
                "on": " false ",
                "yes": "yes",
                "list": "a, b ,,c,",
                "unit": " °C ",
                "seuil": "zéro🚀",
                "lo": "-9223372036854775808",
                "hi": "9223372036854775807",
                "over": "9223372036854775808",
                "neg": "-1",
                "under": "1_000",
                "inf": "-inf",
                "exp": "1e3",
                "num": 50,
                "flag": True,
            }
        )

    def tearDown(self):
        testing.install(None)

    def test_get_and_defaults(self):
        self.assertEqual(params.get("max"), " 2.5\t")
        self.assertIsNone(params.get("nope"))
        self.assertEqual(params.get("nope", "d"), "d")
        self.assertEqual(params.get_or("nope", "mean"), "mean")
        self.assertEqual(params.get_str("unit"), "°C")
        self.assertEqual(params.all()["n"], "\n42 ")
        self.assertEqual(list(params.all()), sorted(params.all()))
        # Non-text values in the test host read as the host's config writes them.
        self.assertEqual(params.get("num"), "50")
        self.assertEqual(params.get("flag"), "true")

    def test_unset_is_the_default_not_an_error(self):
        self.assertIsNone(params.get_float("nope"))
        self.assertEqual(params.get_float("nope", 100.0), 100.0)
        self.assertEqual(params.get_int("nope", 3), 3)
        self.assertIs(params.get_bool("nope", False), False)
        self.assertEqual(params.get_list("nope"), [])

    def test_values_are_trimmed(self):
        self.assertEqual(params.get_float("max"), 2.5)
        self.assertEqual(params.get_int("n"), 42)
        self.assertIs(params.get_bool("on"), False)
        self.assertEqual(params.get_float("inf"), -math.inf)
        self.assertEqual(params.get_float("exp"), 1000.0)
        self.assertEqual(params.get_int("lo"), -(1 << 63))
        self.assertEqual(params.get_int("hi"), (1 << 63) - 1)

    def assertParamError(self, call, message):
        with self.assertRaises(PluginError) as cm:
            call()
        self.assertEqual(cm.exception.message, message)
        self.assertIsNone(cm.exception.index, "a parameter error fails the whole batch")

    def test_errors_name_parameter_value_and_reason(self):
        self.assertParamError(
            lambda: params.get_float("bad"), "parameter `bad` = `abc`: invalid float literal"
        )
        self.assertParamError(
            lambda: params.get_int("int_float"),
            "parameter `int_float` = ` 1.5 `: invalid digit found in string",
        )
        self.assertParamError(
            lambda: params.get_float("empty"),
            "parameter `empty` = `   `: cannot parse float from empty string",
        )
        self.assertParamError(
            lambda: params.get_int("empty"),
            "parameter `empty` = `   `: cannot parse integer from empty string",
        )
        self.assertParamError(
            lambda: params.get_bool("yes"),
            "parameter `yes` = `yes`: provided string was not `true` or `false`",
        )
        self.assertParamError(
            lambda: params.get_int("over"),
            "parameter `over` = `9223372036854775808`: number too large to fit in target type",
        )
        self.assertParamError(
            lambda: params.get_int("neg", min=0),
            "parameter `neg` = `-1`: invalid digit found in string",
        )
        self.assertParamError(
            lambda: params.get_int("n", max=10),
            "parameter `n` = `\n42 `: number too large to fit in target type",
        )
        # Python would accept underscores; the Rust SDK (and so this one) doesn't.
        self.assertParamError(
            lambda: params.get_float("under"),
            "parameter `under` = `1_000`: invalid float literal",
        )
        self.assertParamError(
            lambda: params.get_float("seuil"),
            "parameter `seuil` = `zéro🚀`: invalid float literal",
        )
        self.assertParamError(lambda: params.require("nope"), "parameter `nope` is required")

    def test_lists(self):
        self.assertEqual(params.get_list("list"), ["a", "b", "c"])
        self.assertEqual(params.list("list"), ["a", "b", "c"])
        self.assertEqual(params.split_list(" , ,\t,"), [])
        self.assertEqual(params.split_list("a;b, c d"), ["a;b", "c d"])
        self.assertEqual(params.split_list("zürich, 東京 ,🚀"), ["zürich", "東京", "🚀"])


class LogTest(unittest.TestCase):
    def test_levels_messages_and_fields(self):
        with testing.use() as host:
            log.trace("t")
            log.debug("d", n=3)
            log.info("température élevée 🚀", ville="Zürich", ratio=0.5)
            log.warn("w", big=(1 << 64) - 1)
            log.error("e", ok=True)
            log.write("info", "pairs", [("k=v", "a,b\\c")])
            log.write(4, "dict", {"a": 1}, b=2)
        self.assertEqual(
            host.logs,
            [
                ("trace", "t", {}),
                ("debug", "d", {"n": "3"}),
                ("info", "température élevée 🚀", {"ville": "Zürich", "ratio": "0.5"}),
                ("warn", "w", {"big": "18446744073709551615"}),
                ("error", "e", {"ok": "True"}),
                ("info", "pairs", {"k=v": "a,b\\c"}),
                ("error", "dict", {"a": "1", "b": "2"}),
            ],
        )
        self.assertEqual(host.messages("error"), ["e", "dict"])


class LookupTest(unittest.TestCase):
    def test_rows_and_misses(self):
        tables = {"hosts": {"web-1": {"dc": "eu", "rack": "r1"}, "é": {"ville": "Zürich"}}}
        with testing.use(tables=tables):
            self.assertEqual(lookup.get("hosts", "web-1"), {"dc": "eu", "rack": "r1"})
            self.assertEqual(lookup.get("hosts", "é"), {"ville": "Zürich"})
            self.assertIsNone(lookup.get("hosts", "nope"))
            self.assertIsNone(lookup.get("nope", "web-1"))


class StateTest(unittest.TestCase):
    def test_bytes_and_conveniences(self):
        with testing.use() as host:
            self.assertIsNone(state.get("k"))
            state.set("k", b"\x00\xff")
            self.assertEqual(state.get("k"), b"\x00\xff")
            state.remove("k")
            self.assertIsNone(state.get("k"))
            state.remove("k")  # removing a missing key is fine
            state.set_json("j", {"a": [1, 2]})
            self.assertEqual(state.get_json("j"), {"a": [1, 2]})
            state.set("notjson", b"{")
            self.assertEqual(state.get_json("notjson", "dflt"), "dflt")
            state.set_str("s", "Zürich")
            self.assertEqual(state.get_str("s"), "Zürich")
            state.set_float("f", -0.0)
            self.assertEqual(math.copysign(1, state.get_float("f")), -1)
            with self.assertRaises(TypeError):
                state.set("k", "text")
        self.assertIn("j", host.state)

    def test_samples_share_the_rust_layout(self):
        self.assertEqual(state.encode_sample(1, 1.0), bytes([1] + [0] * 7 + [0] * 6 + [0xF0, 0x3F]))
        self.assertEqual(state.encode_sample(-2, -2.0)[:8], b"\xfe" + b"\xff" * 7)
        for ts, v in [(0, 0.0), ((1 << 63) - 1, math.inf), (-(1 << 63), -1.5)]:
            self.assertEqual(state.decode_sample(state.encode_sample(ts, v)), (ts, v))
        nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
        ts, back = state.decode_sample(state.encode_sample(7, nan))
        self.assertEqual(struct.pack("<d", back), struct.pack("<d", nan))
        for n in (0, 1, 8, 15):
            self.assertIsNone(state.decode_sample(b"\xab" * n))
        self.assertEqual(state.decode_sample(state.encode_sample(-5, 2.5) + b"trailing"), (-5, 2.5))
        with testing.use():
            state.set_sample("c", 10, 2.5)
            self.assertEqual(state.get_sample("c"), (10, 2.5))
            self.assertIsNone(state.get_sample("none"))

    def test_full_state_raises_plugin_error(self):
        with testing.use(state_limit=1):
            state.set("a", b"1")
            state.set("a", b"2")  # replacing is fine
            with self.assertRaises(PluginError) as cm:
                state.set("b", b"1")
            self.assertIn("state `b`", cm.exception.message)


if __name__ == "__main__":
    unittest.main()

"""The WIT boundary, natively: the bindings componentize-py generates for each world are
importable as plain Python, so `export` can be driven with the generated records (a
generated `Batch` of bytes columns, `WindowResult`s) and its results and errors checked as
the host would receive them. Skipped when componentize-py is not installed."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
WIT = os.path.normpath(os.path.join(SDK, "..", "..", "wit"))
if not os.path.isdir(WIT):  # a project's copy of the SDK: NAME/sdk beside NAME/wit
    WIT = os.path.normpath(os.path.join(SDK, "..", "wit"))

SCRIPT = textwrap.dedent(
    r'''
    import sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from componentize_py_types import Err
    from wit_world.imports import types as t
    import sluice_sdk
    from sluice_sdk import testing, Point, Unsigned, PluginError

    world = sys.argv[3]
    out = []

    if world == "filter":
        class F(sluice_sdk.Filter):
            def setup(self):
                self.max = sluice_sdk.params.get_float("max", 10.0)
            def keep(self, p):
                v = p.number("value")
                return v is not None and v <= self.max
        W = sluice_sdk.export(F)
        raw = sluice_sdk.Batch.from_points(
            [Point("é", {"h": "ü"}, {"value": 1.0}), Point("m", {}, {"value": 50})]).raw
        batch = t.Batch(*(getattr(raw, s) for s in raw.__slots__))
        with testing.use(params={"max": "5"}):
            out.append(W().filter(batch))
        testing.install(params={"max": "x"})
        try:
            W().filter(batch)
        except Err as e:
            out.append(e.value)

    elif world == "transform":
        class T(sluice_sdk.Transform):
            def transform(self, p):
                if p.measurement == "fail":
                    raise PluginError("bad point")
                p.fields["u"] = Unsigned(3)
                p.fields["big"] = 1 << 63
                p.fields["b"] = True
                p.fields["s"] = "Zürich"
                p.tags["t"] = "東京"
                return p
        W = sluice_sdk.export(T)
        raw = sluice_sdk.Batch.from_points([Point("é", {"h": "ü"}, {"value": -2}, 7)]).raw
        batch = t.Batch(*(getattr(raw, s) for s in raw.__slots__))
        with testing.use():
            back = sluice_sdk.Batch(W().transform(batch)).to_points()
        out.append([(p, {k: type(v).__name__ for k, v in p.fields.items()}) for p in back])
        raw = sluice_sdk.Batch.from_points([Point("ok", {}, {"v": 1}), Point("fail", {}, {"v": 1})]).raw
        testing.install()
        try:
            W().transform(t.Batch(*(getattr(raw, s) for s in raw.__slots__)))
        except Err as e:
            out.append(e.value)

    else:
        class A(sluice_sdk.Alert):
            def evaluate(self, w):
                v = w.aggregate("mean")
                if v is None:
                    return None
                return w.alert(sluice_sdk.AlertState.CRITICAL, v, f"{w.series.key()} {v}")
        W = sluice_sdk.export(A)
        win = t.WindowResult("r", t.Series("cpu", [t.Tag("host", "é")]), "f", 1, 2,
                             [t.Aggregate("mean", 93.5), t.Aggregate("mean", 1.0)],
                             t.AlertState.WARNING)
        empty = t.WindowResult("r", t.Series("cpu", []), "f", 1, 2, [], t.AlertState.OK)
        third = t.WindowResult("r", t.Series("m", []), "f", 1, 2, [t.Aggregate("mean", -1.0)],
                               t.AlertState.OK)
        with testing.use():
            out.append(W().evaluate([win, empty, third]))
    print(repr(out))
    '''
)


@unittest.skipUnless(shutil.which("componentize-py") and os.path.isdir(WIT),
                     "componentize-py or the WIT directory is missing")
class WitBoundaryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_world(self, world):
        out = os.path.join(self.tmp, world)
        subprocess.run(["componentize-py", "-d", WIT, "-w", world, "bindings", out],
                       check=True, capture_output=True)
        script = os.path.join(self.tmp, "drive.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        r = subprocess.run([sys.executable, script, out, SDK, world],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_filter(self):
        out = self.run_world("filter")
        self.assertEqual(
            out,
            "[[True, False], PluginError(message='parameter `max` = `x`: invalid float literal',"
            " index=None)]",
        )

    def test_transform(self):
        out = self.run_world("transform")
        self.assertIn(
            "(Point('é', tags={'h': 'ü', 't': '東京'}, fields={'value': -2, 'u': Unsigned(3), "
            "'big': Unsigned(9223372036854775808), 'b': True, 's': 'Zürich'}, timestamp=7), "
            "{'value': 'int', 'u': 'Unsigned', 'big': 'Unsigned', 'b': 'bool', 's': 'str'})",
            out,
        )
        self.assertIn("PluginError(message='bad point', index=1)", out)

    def test_alert(self):
        out = self.run_world("alert")
        self.assertEqual(
            out,
            "[[Alert(window=0, state=<AlertState.CRITICAL: 2>, value=93.5,"
            " message='cpu,host=é 93.5'), Alert(window=2, state=<AlertState.CRITICAL: 2>,"
            " value=-1.0, message='m -1.0')]]",
        )


if __name__ == "__main__":
    unittest.main()

"""Native unit tests of app.py: `python3 -m unittest` in the project directory."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdk"))

import app  # noqa: E402
from sluice_sdk import PluginError, Point, testing  # noqa: E402


class CelsiusTest(unittest.TestCase):
    def test_converts_and_keeps_other_fields(self):
        out = testing.run_transform(app.Celsius, [
            Point("weather", tags={"host": "a"}, fields={"temp_f": 212.0, "rh": 40}, timestamp=7),
            Point("weather", fields={"rh": 50}, timestamp=8),
        ])
        self.assertEqual(out, [
            Point("weather", tags={"host": "a"}, fields={"rh": 40, "temp_c": 100.0}, timestamp=7),
            Point("weather", fields={"rh": 50}, timestamp=8),
        ])

    def test_enriches_from_a_lookup_table(self):
        tables = {"hosts": {"a": {"dc": "eu-west", "ville": "Zürich"}}}
        out = testing.run_transform(app.Celsius, [
            Point("weather", tags={"host": "a"}, fields={"temp_f": 32}),
            Point("weather", tags={"host": "z"}, fields={"temp_f": 32}),
        ], params={"table": "hosts"}, tables=tables)
        self.assertEqual(out[0].tags, {"host": "a", "dc": "eu-west", "ville": "Zürich"})
        self.assertEqual(out[0].fields, {"temp_c": 0.0})
        self.assertEqual(out[1].tags, {"host": "z"})

    def test_non_numeric_source_fails_naming_the_point(self):
        with self.assertRaises(PluginError) as cm:
            testing.run_transform(app.Celsius, [
                Point("w", fields={"temp_f": 1.0}), Point("w", fields={"temp_f": "hot"})])
        self.assertEqual(cm.exception, PluginError("field `temp_f` is not a number", 1))


if __name__ == "__main__":
    unittest.main()

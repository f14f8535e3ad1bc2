"""Native unit tests of app.py: `python3 -m unittest` in the project directory."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdk"))

import app  # noqa: E402
from sluice_sdk import AlertState, PluginError, testing  # noqa: E402


class AboveTest(unittest.TestCase):
    def test_fires_once_and_resolves(self):
        changes = testing.run_alert_sequence(app.Above, [50, 95, 97, 80, 70], params={"above": "90"})
        self.assertEqual([(v, a.state, a.message) for v, a in changes], [
            (95, AlertState.CRITICAL, "cpu value mean 95 >= 90"),
            (80, AlertState.OK, "cpu value mean 80 < 90"),
        ])

    def test_message_names_the_series(self):
        w = testing.window({"max": 99.5}, tags={"host": "é"}, field="usage")
        alerts = testing.run_alert(app.Above, [w], params={"above": "90", "aggregate": "max"})
        self.assertEqual(alerts[0].message, "cpu usage max 99.5 >= 90 host=é")
        self.assertEqual(alerts[0].window_index, 0)

    def test_window_without_the_aggregate_raises_nothing(self):
        w = testing.window({"max": 99.5})
        self.assertEqual(testing.run_alert(app.Above, [w], params={"above": "90"}), [])

    def test_above_is_required(self):
        with self.assertRaises(PluginError):
            testing.run_alert(app.Above, [testing.window({"mean": 1.0})])


if __name__ == "__main__":
    unittest.main()

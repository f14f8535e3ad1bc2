"""Native unit tests of app.py: `python3 -m unittest` in the project directory."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdk"))

import app  # noqa: E402
from sluice_sdk import PluginError, Point, Unsigned, testing  # noqa: E402


class MaxValueTest(unittest.TestCase):
    points = [
        Point("cpu", tags={"host": "a"}, fields={"value": 10.0}),
        Point("cpu", tags={"host": "b"}, fields={"value": 150.0}),
        Point("cpu", tags={"host": "c"}, fields={"value": Unsigned(60)}),
        Point("température", tags={"ville": "Zürich"}, fields={"value": -5}),
        Point("cpu", fields={"other": 1e9}),
        Point("cpu", fields={"value": "text"}),
    ]

    def test_default_max_is_100(self):
        verdicts = testing.run_filter(app.MaxValue, self.points)
        self.assertEqual(verdicts, [True, False, True, True, True, True])

    def test_max_parameter(self):
        host = testing.FakeHost(params={"max": "50"})
        verdicts = testing.run_filter(app.MaxValue, self.points, host=host)
        self.assertEqual(verdicts, [True, False, False, True, True, True])
        self.assertEqual(host.logs, [("debug", "dropped points above max", {"dropped": "2", "max": "50.0"})])

    def test_bad_max_fails_the_batch(self):
        with self.assertRaises(PluginError) as cm:
            testing.run_filter(app.MaxValue, self.points, params={"max": "abc"})
        self.assertEqual(cm.exception.message, "parameter `max` = `abc`: invalid float literal")


if __name__ == "__main__":
    unittest.main()

"""Native unit tests of plugins: a stand-in host and runners that call a plugin class the
way the component does, on batches with the host's exact byte layout.

    from sluice_sdk import Point, testing
    import app

    class TestApp(unittest.TestCase):
        def test_drops_above_max(self):
            host = testing.FakeHost(params={"max": "50"})
            verdicts = testing.run_filter(app.MaxValue, [
                Point("cpu", fields={"value": 10.0}),
                Point("cpu", fields={"value": 90.0}),
            ], host=host)
            self.assertEqual(verdicts, [True, False])
            self.assertEqual(host.logs, [...])

The runners raise `PluginError` as the host would receive it, and, like the host, keep the
state writes of a call only when it succeeds.
"""

import contextlib

from . import _host
from .batch import Batch, RawBatch, encode_points
from .errors import PluginError
from .model import AlertState, Point, Series, Window
from .plugin import call_evaluate, call_filter, call_transform, unexpected

LEVELS = ("trace", "debug", "info", "warn", "error")


class FakeHost:
    """Stands in for the host's imports in native tests.

    params: dict name -> str (non-str values are converted with str(), as the host's
        config does for numbers and booleans).
    tables: dict table -> dict key -> dict column -> value (lookup tables).
    state: dict key -> bytes (read it after a run to see what a plugin stored).
    state_limit: the number of keys `state.set` accepts before failing, as a full stage.
    logs: list of (level name, message, dict of fields), appended by `log`.
    """

    def __init__(self, params=None, tables=None, state=None, state_limit=None):
        self.params = {
            k: (v if isinstance(v, str) else _param_text(v))
            for k, v in (params or {}).items()
        }
        self.tables = tables or {}
        self.state = dict(state or {})
        self.state_limit = state_limit
        self.logs = []

    # The host interface of sluice_sdk._host.
    def params_get(self, name):
        return self.params.get(name)

    def params_all(self):
        return sorted(self.params.items())

    def log(self, level, message, fields):
        self.logs.append((LEVELS[level], message, dict(fields)))

    def lookup_get(self, table, key):
        row = self.tables.get(table, {}).get(key)
        return None if row is None else list(row.items())

    def state_get(self, key):
        return self.state.get(key)

    def state_set(self, key, value):
        if (
            self.state_limit is not None
            and key not in self.state
            and len(self.state) >= self.state_limit
        ):
            raise PluginError(f"state `{key}`: the stage's state is full")
        self.state[key] = bytes(value)

    def state_remove(self, key):
        self.state.pop(key, None)

    def messages(self, level=None):
        """The logged messages (of `level` only, if given)."""
        return [m for lv, m, _ in self.logs if level is None or lv == level]


def _param_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@contextlib.contextmanager
def use(host=None, **kw):
    """Within the block, the SDK's helpers call `host` (or `FakeHost(**kw)`)."""
    host = host if host is not None else FakeHost(**kw)
    previous = _host.install(host)
    try:
        yield host
    finally:
        _host.install(previous)


def install(host=None, **kw):
    """Makes `host` (or `FakeHost(**kw)`) the host of the helpers until replaced; returns
    it. Handy in `setUp`."""
    host = host if host is not None else FakeHost(**kw)
    _host.install(host)
    return host


def batch(points):
    """The `Batch` the host would send for `points`."""
    return Batch.from_points(points)


def _call(fn, host, kw):
    with use(host, **kw) as h:
        saved = dict(h.state)
        try:
            return fn()
        except PluginError:
            h.state.clear()
            h.state.update(saved)
            raise
        except Exception as e:
            # As in the component: any other exception fails the batch with its message.
            h.state.clear()
            h.state.update(saved)
            err = unexpected(e, print_traceback=False)
            raise err from e


def run_filter(cls, points, host=None, **kw):
    """The verdicts filter class `cls` gives for `points` (`Point`s or a `Batch`), as the
    host would get them. `host` (or `FakeHost(**kw)`: params=, tables=, state=) serves the
    imports."""
    b = points if isinstance(points, Batch) else Batch.from_points(points)
    return _call(lambda: call_filter(cls, b), host, kw)


def run_transform(cls, points, host=None, **kw):
    """The points transform class `cls` returns for `points`, checked as the component
    checks them before they cross to the host (a PluginError names a bad one)."""
    b = points if isinstance(points, Batch) else Batch.from_points(points)

    def run():
        out = call_transform(cls, b)
        encode_points(out, strict=True)
        return out

    return _call(run, host, kw)


def run_alert(cls, windows, host=None, **kw):
    """The alerts alert class `cls` raises for `windows` (a list of `Window`; their `index`
    is set to their position, as the component does)."""
    windows = list(windows)
    for i, w in enumerate(windows):
        w.index = i

    def run():
        out = call_evaluate(cls, windows)
        for i, a in enumerate(out):
            if not 0 <= a.window_index < len(windows):
                raise PluginError(
                    f"alert {i} names window {a.window_index}, not one of the "
                    f"{len(windows)} windows",
                    i,
                )
        return out

    return _call(run, host, kw)


run_evaluate = run_alert


def window(
    aggregates,
    state=AlertState.OK,
    measurement="cpu",
    tags=None,
    rule="rule",
    field="value",
    start=0,
    end=60_000_000_000,
):
    """A `Window` for tests: `window({"mean": 93.2}, tags={"host": "a"})`."""
    return Window(
        rule=rule,
        series=Series(measurement, dict(sorted((tags or {}).items()))),
        field=field,
        window_start=start,
        window_end=end,
        aggregates=aggregates,
        state=state,
    )


def run_alert_sequence(cls, values, aggregate="mean", host=None, **kw):
    """Feeds `values` one window at a time, carrying the state from alert to alert as the
    host does; the list of (value, AlertEvent) for the windows that raised one."""
    host = host if host is not None else FakeHost(**kw)
    state = AlertState.OK
    out = []
    for v in values:
        alerts = run_alert(cls, [window({aggregate: v}, state=state)], host=host)
        for a in alerts:
            state = a.state
            out.append((v, a))
    return out


__all__ = [
    "FakeHost",
    "use",
    "install",
    "batch",
    "run_filter",
    "run_transform",
    "run_alert",
    "run_evaluate",
    "window",
    "run_alert_sequence",
    "Batch",
    "RawBatch",
    "encode_points",
    "Point",
]

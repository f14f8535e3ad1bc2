"""Base classes of the three worlds and `export`, which turns one of them into the
`WitWorld` class componentize-py calls.

The host calls the plugin once per batch. For each call the SDK makes a new instance of
your class (so `setup()` runs once per batch: read parameters there), then calls the batch
method, whose default calls the per-item method for each point or window.
"""

import gc
import sys
import traceback

from .batch import Batch, encode_points
from .errors import PluginError
from .model import (
    AlertEvent,
    AlertState,
    Point,
    Series,
    Window,
    check_point,
)


class _Plugin:
    def __init__(self):
        self.setup()

    def setup(self):
        """Runs once per batch, before the batch: read and check parameters here (raise
        `PluginError` naming a bad one, or let the `params` helpers raise it)."""


class Filter(_Plugin):
    """Keeps or drops each point. Override `keep(point)`, or `filter(batch)`."""

    world = "filter"

    def keep(self, point):
        """True keeps `point` (a `PointView`), False drops it."""
        raise NotImplementedError("a Filter overrides keep(point) or filter(batch)")

    def filter(self, batch):
        """One verdict per point of `batch` (a `Batch`), in order."""
        keep = self.keep
        return [keep(p) for p in batch]


class Transform(_Plugin):
    """Replaces each point with zero or more points. Override `transform(point)`, or
    `transform_batch(batch)`."""

    world = "transform"

    def transform(self, point):
        """What replaces `point` (a `Point`, an owned copy you may change and return): a
        `Point`, an iterable of `Point`s (a list, or `yield` them), or None to drop it."""
        raise NotImplementedError(
            "a Transform overrides transform(point) or transform_batch(batch)"
        )

    def transform_batch(self, batch):
        """The points that replace the whole `batch` (a `Batch`). The default calls
        `transform` on a copy of each point; an error it raises without an index gets the
        point's index."""
        out = []
        transform = self.transform
        for i, view in enumerate(batch):
            try:
                result = transform(view.to_point())
                if result is None:
                    continue
                if isinstance(result, Point):
                    out.append(result)
                else:
                    out.extend(result)
            except PluginError as e:
                if e.index is None:
                    e.index = i
                raise
        return out


class Alert(_Plugin):
    """Evaluates closed windows. Override `evaluate(window)`, or `evaluate_batch(windows)`."""

    world = "alert"

    def evaluate(self, window):
        """The alert `window` (a `Window`) raises, if its series changes state: an
        `AlertEvent` (`window.alert(state, value, message)`), an iterable of them, or None."""
        raise NotImplementedError(
            "an Alert overrides evaluate(window) or evaluate_batch(windows)"
        )

    def evaluate_batch(self, windows):
        """The alerts of the batch (a list of `Window`), in order."""
        out = []
        evaluate = self.evaluate
        for w in windows:
            result = evaluate(w)
            if result is None:
                continue
            if isinstance(result, AlertEvent):
                out.append(result)
            else:
                out.extend(result)
        return out


# --- the calls, with plain Python values (also what sluice_sdk.testing runs) -------------


def call_filter(cls, batch):
    """Runs filter plugin `cls` over `batch` (a `Batch`): the verdicts, or PluginError."""
    verdicts = cls().filter(batch)
    if type(verdicts) is not list:
        verdicts = list(verdicts)
    if len(verdicts) != len(batch):
        raise PluginError(
            f"filter returned {len(verdicts)} verdicts for {len(batch)} points"
        )
    for v in verdicts:
        if type(v) is not bool:
            return [bool(x) for x in verdicts]
    return verdicts


def call_transform(cls, batch):
    out = cls().transform_batch(batch)
    out = list(out) if type(out) is not list else out
    for i, p in enumerate(out):
        check_point(p, i)
    return out


def call_evaluate(cls, windows):
    out = cls().evaluate_batch(windows)
    out = list(out) if type(out) is not list else out
    for i, a in enumerate(out):
        if not isinstance(a, AlertEvent):
            raise PluginError(
                f"alert {i} is a {type(a).__name__}, not a sluice_sdk.AlertEvent", i
            )
    return out


def unexpected(e, print_traceback=True):
    """A PluginError for an exception the plugin did not mean: its type, message and the
    line it came from; the traceback goes to stderr (the host logs it)."""
    if print_traceback:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    where = ""
    tb = traceback.extract_tb(e.__traceback__)
    if tb:
        last = tb[-1]
        where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
    return PluginError(f"plugin raised {type(e).__name__}: {e}{where}")


# --- the WIT boundary --------------------------------------------------------------------


class _Wit:
    """Conversions to and from the generated WIT types (imported lazily)."""

    def __init__(self):
        from componentize_py_types import Err
        from wit_world.imports import types

        self.Err = Err
        self.t = types
        self.states_in = {
            types.AlertState.OK: AlertState.OK,
            types.AlertState.WARNING: AlertState.WARNING,
            types.AlertState.CRITICAL: AlertState.CRITICAL,
        }
        self.states_out = {v: k for k, v in self.states_in.items()}

    def error(self, e):
        return self.Err(self.t.PluginError(e.message, e.index))

    def batch(self, points):
        """The WIT `batch` of output `points` (checked: a PluginError names a bad one)."""
        raw = encode_points(points, strict=True)
        return self.t.Batch(
            raw.text,
            raw.points,
            raw.timestamps,
            raw.tags,
            raw.field_keys,
            raw.field_kinds,
            raw.field_values,
        )

    def window(self, w, index):
        return Window(
            rule=w.rule,
            series=Series(w.series.measurement, {t.key: t.value for t in w.series.tags}),
            field=w.field,
            window_start=w.window_start,
            window_end=w.window_end,
            aggregates=_first_wins((a.name, a.value) for a in w.aggregates),
            state=self.states_in[w.state],
            index=index,
        )

    def alert(self, a, i, n_windows):
        index = a.window_index
        if type(index) is not int or not 0 <= index < n_windows:
            raise PluginError(
                f"alert {i} names window {index!r}, not one of the {n_windows} windows", i
            )
        state = self.states_out.get(a.state)
        if state is None:
            raise PluginError(f"alert {i}: state {a.state!r} is not an AlertState", i)
        try:
            value = float(a.value)
        except (TypeError, ValueError):
            raise PluginError(f"alert {i}: value {a.value!r} is not a number", i) from None
        return self.t.Alert(index, state, value, str(a.message))


def _first_wins(pairs):
    """A dict of `pairs` where the first of a repeated key wins (as a linear search)."""
    out = {}
    for k, v in pairs:
        if k not in out:
            out[k] = v
    return out


def export(cls):
    """The `WitWorld` class componentize-py instantiates, for plugin class `cls` (a
    subclass of `Filter`, `Transform` or `Alert`). In app.py:

        WitWorld = sluice_sdk.export(MyFilter)

    Every call makes a fresh `cls()` (so `setup` runs once per batch). A `PluginError` fails
    the batch with its message and index; any other exception fails it too, with the
    exception's type and message (and its traceback on stderr, which the host logs).
    """
    if issubclass(cls, Filter):
        world = "filter"
    elif issubclass(cls, Transform):
        world = "transform"
    elif issubclass(cls, Alert):
        world = "alert"
    else:
        raise TypeError(
            f"{cls.__name__} is not a subclass of sluice_sdk.Filter, Transform or Alert"
        )
    try:
        import wit_world

        base = wit_world.WitWorld
        # Build-time check: the world the project builds must be this class's world.
        if not hasattr(base, {"filter": "filter", "transform": "transform", "alert": "evaluate"}[world]):
            raise TypeError(
                f"{cls.__name__} is a {world} plugin but the component is built for another "
                "world: check the `world` file of the project"
            )
        wit = _Wit()
        # Import the host's interfaces now: app.py is imported while componentize-py
        # builds the component, and a component has no filesystem to import from later.
        from . import _host

        if not isinstance(_host._installed, _host.WitHost):
            _host.install(_host.WitHost())
        # Everything imported so far lives as long as the instance: keep the cycle collector
        # from scanning it again and again while batches allocate their views.
        gc.collect()
        gc.freeze()
    except ImportError:
        base = object
        wit = None

    def lazy():
        nonlocal wit
        if wit is None:
            wit = _Wit()
        return wit

    if world == "filter":

        class WitWorld(base):
            def filter(self, batch):
                try:
                    return call_filter(cls, Batch(batch))
                except PluginError as e:
                    raise lazy().error(e) from None
                except Exception as e:
                    raise lazy().error(unexpected(e)) from None

    elif world == "transform":

        class WitWorld(base):
            def transform(self, batch):
                try:
                    w = lazy()
                    return w.batch(call_transform(cls, Batch(batch)))
                except PluginError as e:
                    raise lazy().error(e) from None
                except Exception as e:
                    raise lazy().error(unexpected(e)) from None

    else:

        class WitWorld(base):
            def evaluate(self, windows):
                try:
                    w = lazy()
                    out = call_evaluate(cls, [w.window(x, i) for i, x in enumerate(windows)])
                    n = len(windows)
                    return [w.alert(a, i, n) for i, a in enumerate(out)]
                except PluginError as e:
                    raise lazy().error(e) from None
                except Exception as e:
                    raise lazy().error(unexpected(e)) from None

    WitWorld.__qualname__ = WitWorld.__name__ = "WitWorld"
    WitWorld.plugin = cls
    return WitWorld

"""Where the host imports (`params`, `log`, `lookup`, `state`) come from.

Inside a component they are the WIT imports of the generated `wit_world` package. Natively
(unit tests) there is no `wit_world`: a `sluice_sdk.testing.FakeHost` stands in, either
one installed with `sluice_sdk.testing.use(...)` or an empty default one.
"""

from .errors import PluginError

_installed = None


class WitHost:
    """The real host, through the bindings componentize-py generates."""

    def __init__(self):
        # Imported here, not at module level, so the SDK imports natively without them.
        from componentize_py_types import Err
        from wit_world.imports import log, lookup, params, state

        self._err = Err
        self._params = params
        self._log = log
        self._lookup = lookup
        self._state = state
        self._levels = [
            log.Level.TRACE,
            log.Level.DEBUG,
            log.Level.INFO,
            log.Level.WARN,
            log.Level.ERROR,
        ]

    def params_get(self, name):
        return self._params.get(name)

    def params_all(self):
        return list(self._params.all())

    def log(self, level, message, fields):
        self._log.log(self._levels[level], message, fields)

    def lookup_get(self, table, key):
        return self._lookup.get(table, key)

    def state_get(self, key):
        return self._state.get(key)

    def state_set(self, key, value):
        try:
            self._state.set(key, value)
        except self._err as e:
            raise PluginError(f"state `{key}`: {e.value}") from None

    def state_remove(self, key):
        self._state.remove(key)


def install(host):
    """Makes `host` the one the helpers call; `None` goes back to the default. Returns the
    previous one."""
    global _installed
    previous = _installed
    _installed = host
    return previous


def current():
    """The host the helpers call."""
    global _installed
    if _installed is None:
        try:
            _installed = WitHost()
        except ImportError:
            from .testing import FakeHost

            _installed = FakeHost()
    return _installed


def in_component():
    """True when the generated bindings are importable (inside componentize-py)."""
    try:
        import wit_world  # noqa: F401
    except ImportError:
        return False
    return True

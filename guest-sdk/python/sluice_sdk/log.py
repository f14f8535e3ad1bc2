"""Structured logging into the host's log, tagged with the plugin's name and version.

    log.info("filtered a batch", points=len(batch), dropped=n)

Field values are converted with `str()`. The host keeps at most 100 records per batch.
`print()` also works (the host logs stdout and stderr), but records here are structured.
"""

from . import _host

TRACE = 0
DEBUG = 1
INFO = 2
WARN = 3
ERROR = 4

_NAMES = {"trace": TRACE, "debug": DEBUG, "info": INFO, "warn": WARN, "error": ERROR}


def write(level, message, fields=None, **kw):
    """Logs `message` at `level` (0-4 or "trace", "debug", "info", "warn", "error") with
    `fields` (a dict or (key, value) pairs) and keyword fields."""
    if isinstance(level, str):
        level = _NAMES[level.lower()]
    pairs = []
    if fields:
        items = fields.items() if isinstance(fields, dict) else fields
        pairs = [(str(k), str(v)) for k, v in items]
    if kw:
        pairs += [(k, str(v)) for k, v in kw.items()]
    _host.current().log(level, str(message), pairs)


def trace(message, **fields):
    write(TRACE, message, None, **fields)


def debug(message, **fields):
    write(DEBUG, message, None, **fields)


def info(message, **fields):
    write(INFO, message, None, **fields)


def warn(message, **fields):
    write(WARN, message, None, **fields)


warning = warn


def error(message, **fields):
    write(ERROR, message, None, **fields)

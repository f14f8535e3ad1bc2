"""Small key-value state the host keeps per pipeline stage, across batches and plugin
versions. Writes of a batch take effect only if the batch succeeds. Keep nothing in module
globals between batches: the host may use a fresh instance for every batch.
"""

import json
import struct

from . import _host
from .errors import PluginError


def get(key):
    """The bytes stored under `key`, or None."""
    value = _host.current().state_get(key)
    return None if value is None else bytes(value)


def set(key, value):  # noqa: A001
    """Stores `value` (bytes) under `key`. Raises PluginError when the stage's state is full
    or the value too large."""
    if isinstance(value, str):
        raise TypeError("state.set takes bytes; use set_str, set_json or set_float")
    _host.current().state_set(key, bytes(value))


def remove(key):
    """Removes `key`."""
    _host.current().state_remove(key)


def get_str(key):
    value = get(key)
    return None if value is None else value.decode("utf-8", "replace")


def set_str(key, value):
    set(key, value.encode())


def get_json(key, default=None):
    """The JSON value stored by `set_json`; `default` when absent or not JSON."""
    value = get(key)
    if value is None:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def set_json(key, value):
    set(key, json.dumps(value, separators=(",", ":")).encode())


def encode_sample(ts, value):
    """The 16 bytes of a sample: the timestamp (s64), then the value's f64 bits,
    little-endian (the Rust SDK's layout, so plugins of both languages share state)."""
    return struct.pack("<qd", ts, value)


def decode_sample(data):
    """(timestamp, value) from `encode_sample`'s bytes; None when fewer than 16 bytes."""
    if data is None or len(data) < 16:
        return None
    return struct.unpack_from("<qd", data)


def get_sample(key):
    """The (timestamp, value) stored by `set_sample`, or None."""
    return decode_sample(get(key))


def set_sample(key, ts, value):
    set(key, encode_sample(ts, value))


def get_float(key):
    """The float stored by `set_float` (8 bytes, little-endian), or None."""
    value = get(key)
    if value is None or len(value) < 8:
        return None
    return struct.unpack_from("<d", value)[0]


def set_float(key, value):
    set(key, struct.pack("<d", value))


__all__ = [
    "get",
    "set",
    "remove",
    "get_str",
    "set_str",
    "get_json",
    "set_json",
    "get_sample",
    "set_sample",
    "get_float",
    "set_float",
    "PluginError",
]

"""Read-only lookup tables for enrichment (CSV files named in the host configuration, or
`--lookup name=file.csv` of `sluice plugin run`)."""

from . import _host


def get(table, key):
    """The row of `table` whose key column equals `key`, as a dict column -> value without
    the key column; None when the table has no such row or there is no such table."""
    row = _host.current().lookup_get(table, key)
    return None if row is None else dict(row)

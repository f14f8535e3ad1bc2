//! Lookup tables for enrichment, loaded by the host from CSV files.

use crate::bindings::iface::lookup as wit;

/// The row of `table` whose key is `key`: (column, value) pairs without the key column.
pub fn get(table: &str, key: &str) -> Option<Vec<(String, String)>> {
    wit::get(table, key)
}

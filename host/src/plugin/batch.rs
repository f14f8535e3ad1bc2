//! The plugin boundary of [`Columns`]: the WIT `batch` record has the same columns, so a
//! call moves them into it and back, never copying or encoding them.

use super::bindings::types::Batch;
use crate::columns::Columns;

impl From<Columns> for Batch {
    fn from(c: Columns) -> Self {
        Batch {
            text: c.text,
            points: c.points,
            timestamps: c.timestamps,
            tags: c.tags,
            field_keys: c.field_keys,
            field_kinds: c.field_kinds,
            field_values: c.field_values,
        }
    }
}

impl From<Batch> for Columns {
    fn from(b: Batch) -> Self {
        Columns {
            text: b.text,
            points: b.points,
            timestamps: b.timestamps,
            tags: b.tags,
            field_keys: b.field_keys,
            field_kinds: b.field_kinds,
            field_values: b.field_values,
        }
    }
}

/// Runs `call` with `columns` as the WIT batch, then gives them back.
pub(super) fn lend<T>(columns: &mut Columns, call: impl FnOnce(&Batch) -> T) -> T {
    let batch = Batch::from(std::mem::take(columns));
    let out = call(&batch);
    *columns = Columns::from(batch);
    out
}

//! Lookup tables for enrichment: CSV files loaded once, read by plugins through the WIT
//! `lookup` import. CSV parsing is the `csv` crate's job, not ours.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One row: (column, value) pairs without the key column, in header order.
pub type Row = Vec<(String, String)>;

/// A lookup table failed to load.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The file could not be read or is not valid CSV.
    #[error("lookup table `{table}` ({path}): {source}")]
    Csv {
        /// Table name.
        table: String,
        /// File it comes from.
        path: PathBuf,
        /// The CSV reader's error (carries the line).
        source: csv::Error,
    },
    /// The file has a header but no key column.
    #[error("lookup table `{table}` ({path}): needs a header with at least a key column")]
    NoKeyColumn {
        /// Table name.
        table: String,
        /// File it comes from.
        path: PathBuf,
    },
}

/// Named, read-only lookup tables: table name → key → row.
///
/// The first CSV column is the key; the header names the other columns.
#[derive(Debug, Default, Clone)]
pub struct LookupTables {
    tables: HashMap<String, HashMap<String, Row>>,
}

impl LookupTables {
    /// Loads `table` from the CSV file at `path`, replacing a table of the same name.
    ///
    /// # Errors
    /// When the file can't be read or parsed, naming the table, file and line.
    pub fn load_csv(&mut self, table: &str, path: &Path) -> Result<(), LookupError> {
        let csv_err = |source| LookupError::Csv {
            table: table.to_owned(),
            path: path.to_owned(),
            source,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(csv_err)?;
        let header: Vec<String> = reader
            .headers()
            .map_err(csv_err)?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.is_empty() {
            return Err(LookupError::NoKeyColumn {
                table: table.to_owned(),
                path: path.to_owned(),
            });
        }
        let mut rows = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(csv_err)?;
            let mut cells = record.iter();
            let Some(key) = cells.next() else { continue };
            let row = header[1..]
                .iter()
                .cloned()
                .zip(cells.map(str::to_owned))
                .collect();
            rows.insert(key.to_owned(), row);
        }
        self.tables.insert(table.to_owned(), rows);
        Ok(())
    }

    /// The row of `table` under `key`.
    pub fn get(&self, table: &str, key: &str) -> Option<&Row> {
        self.tables.get(table)?.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_rows_by_first_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts.csv");
        std::fs::write(&path, "host,dc,rack\nweb-1, eu-1 ,r7\nweb-2,us-1,r1\n").expect("write");
        let mut tables = LookupTables::default();
        tables.load_csv("hosts", &path).expect("load");
        assert_eq!(
            tables.get("hosts", "web-1"),
            Some(&vec![
                ("dc".into(), "eu-1".into()),
                ("rack".into(), "r7".into())
            ])
        );
        assert_eq!(tables.get("hosts", "web-3"), None);
        assert_eq!(tables.get("other", "web-1"), None);
    }

    #[test]
    fn ragged_rows_are_an_error_naming_the_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "host,dc\nweb-1,eu,extra\n").expect("write");
        let err = LookupTables::default()
            .load_csv("hosts", &path)
            .expect_err("ragged row");
        assert!(err.to_string().contains("lookup table `hosts`"), "{err}");
    }
}

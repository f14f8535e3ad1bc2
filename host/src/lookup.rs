//! Lookup tables for enrichment: CSV loaded once (the service's files, and each tenant's
//! own tables), read by plugins through the WIT `lookup` import. CSV parsing is the `csv`
//! crate's job, not ours.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One row: (column, value) pairs without the key column, in header order.
pub type Row = Vec<(String, String)>;

/// A lookup table failed to load.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The file could not be read or is not valid CSV.
    #[error("lookup table `{table}` ({from}): {source}")]
    Csv {
        /// Table name.
        table: String,
        /// Where it comes from: a file, or a tenant's pipeline.
        from: String,
        /// The CSV reader's error (carries the line).
        source: csv::Error,
    },
    /// The file has a header but no key column.
    #[error("lookup table `{table}` ({from}): needs a header with at least a key column")]
    NoKeyColumn {
        /// Table name.
        table: String,
        /// Where it comes from.
        from: String,
    },
}

/// One table: key → row.
type Table = HashMap<String, Row>;

/// Named, read-only lookup tables: table name → key → row. Tables are shared, so a
/// tenant's set (the service's tables with its own over them) costs no copy.
///
/// The first CSV column is the key; the header names the other columns.
#[derive(Debug, Default, Clone)]
pub struct LookupTables {
    tables: HashMap<String, Arc<Table>>,
}

impl LookupTables {
    /// Loads `table` from the CSV file at `path`, replacing a table of the same name.
    ///
    /// # Errors
    /// When the file can't be read or parsed, naming the table, file and line.
    pub fn load_csv(&mut self, table: &str, path: &Path) -> Result<(), LookupError> {
        let from = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| LookupError::Csv {
            table: table.to_owned(),
            from: from.clone(),
            source: e.into(),
        })?;
        self.read_csv(table, &from, file)
    }

    /// Loads `table` from CSV `text` (from `from`, for errors), replacing a table of the
    /// same name.
    ///
    /// # Errors
    /// When the text is not valid CSV, naming the table and line.
    pub fn parse_csv(&mut self, table: &str, from: &str, text: &str) -> Result<(), LookupError> {
        self.read_csv(table, from, text.as_bytes())
    }

    fn read_csv(
        &mut self,
        table: &str,
        from: &str,
        input: impl std::io::Read,
    ) -> Result<(), LookupError> {
        let csv_err = |source| LookupError::Csv {
            table: table.to_owned(),
            from: from.to_owned(),
            source,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(input);
        let header: Vec<String> = reader
            .headers()
            .map_err(csv_err)?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.is_empty() {
            return Err(LookupError::NoKeyColumn {
                table: table.to_owned(),
                from: from.to_owned(),
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
        self.tables.insert(table.to_owned(), Arc::new(rows));
        Ok(())
    }

    /// These tables with `over`'s on top (a table of `over` hides one of the same name).
    #[must_use]
    pub fn with(&self, over: &LookupTables) -> LookupTables {
        let mut tables = self.tables.clone();
        tables.extend(over.tables.iter().map(|(k, v)| (k.clone(), v.clone())));
        LookupTables { tables }
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

    #[test]
    fn a_tenants_tables_hide_the_services_of_the_same_name() {
        let mut service = LookupTables::default();
        service
            .parse_csv("hosts", "service", "host,dc\nweb-1,eu\n")
            .expect("service");
        service
            .parse_csv("racks", "service", "rack,row\nr1,7\n")
            .expect("racks");
        let mut own = LookupTables::default();
        own.parse_csv("hosts", "tenant", "host,dc\nweb-1,us\n")
            .expect("own");
        let tenant = service.with(&own);
        assert_eq!(
            tenant.get("hosts", "web-1"),
            Some(&vec![("dc".into(), "us".into())])
        );
        assert_eq!(
            tenant.get("racks", "r1"),
            Some(&vec![("row".into(), "7".into())])
        );
        assert_eq!(
            service.get("hosts", "web-1"),
            Some(&vec![("dc".into(), "eu".into())])
        );
    }
}

//! Structured logging into the host's log (tagged with the plugin's name and version).
//! The host keeps at most 100 records per batch.
//!
//! Functions take `(key, value)` fields; the macros [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error) format the
//! message and take `key = value` fields after a `;`.

#[cfg(not(test))]
use crate::bindings::iface::log::log;
// The host import exists only inside the host: this crate's own unit tests record the
// calls instead, to check what the functions and macros send.
#[cfg(test)]
use tests::log;

/// Severity of a log record.
pub use crate::bindings::iface::log::Level;

/// Logs `message` at `level` with `fields`.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    log(level, message, &fields);
}

/// Logs at debug level.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    write(Level::Debug, message, fields);
}

/// Logs at info level.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    write(Level::Info, message, fields);
}

/// Logs at warn level.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    write(Level::Warn, message, fields);
}

/// Logs at error level.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    write(Level::Error, message, fields);
}

/// Shared body of the level macros: formats the message, stringifies the field keys and
/// formats the field values with `Display`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(; $($key:ident = $value:expr),+ $(,)?)?) => {
        $crate::log::$level(
            &::std::format!($fmt $(, $arg)*),
            &[$($((
                ::core::stringify!($key),
                ::std::string::ToString::to_string(&$value).as_str(),
            )),+)?],
        )
    };
}

/// Logs at debug level: `debug!("seen {n} points"; table = name, rows = 3)`.
///
/// A format string with its arguments, then optionally `;` and `key = value` fields
/// (values are formatted with `Display`).
#[macro_export]
macro_rules! debug {
    ($($t:tt)+) => { $crate::__log!(debug, $($t)+) };
}

/// Logs at info level; the syntax of [`debug!`](crate::debug).
#[macro_export]
macro_rules! info {
    ($($t:tt)+) => { $crate::__log!(info, $($t)+) };
}

/// Logs at warn level; the syntax of [`debug!`](crate::debug).
#[macro_export]
macro_rules! warn {
    ($($t:tt)+) => { $crate::__log!(warn, $($t)+) };
}

/// Logs at error level; the syntax of [`debug!`](crate::debug).
#[macro_export]
macro_rules! error {
    ($($t:tt)+) => { $crate::__log!(error, $($t)+) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    type Record = (Level, String, Vec<(String, String)>);

    thread_local! {
        static RECORDS: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
    }

    /// Stands in for the host's `log` import.
    pub(super) fn log(level: Level, message: &str, fields: &[(String, String)]) {
        RECORDS.with(|r| {
            r.borrow_mut()
                .push((level, message.to_owned(), fields.to_vec()))
        });
    }

    /// The records logged on this thread since the last call.
    fn take() -> Vec<Record> {
        RECORDS.with(|r| r.take())
    }

    fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn functions_send_their_level_message_and_fields_in_order() {
        debug("d", &[]);
        info("i", &[("b", "2"), ("a", "1")]);
        warn("w", &[("k", "")]);
        error("e", &[("x", "y")]);
        write(Level::Trace, "t", &[]);
        assert_eq!(
            take(),
            [
                (Level::Debug, "d".to_owned(), vec![]),
                (
                    Level::Info,
                    "i".to_owned(),
                    owned(&[("b", "2"), ("a", "1")])
                ),
                (Level::Warn, "w".to_owned(), owned(&[("k", "")])),
                (Level::Error, "e".to_owned(), owned(&[("x", "y")])),
                (Level::Trace, "t".to_owned(), vec![]),
            ]
        );
    }

    #[test]
    fn non_ascii_and_separator_characters_pass_through_unchanged() {
        info(
            "température élevée 🚀",
            &[("ville", "Zürich"), ("k=v", "a,b\\c")],
        );
        assert_eq!(
            take(),
            [(
                Level::Info,
                "température élevée 🚀".to_owned(),
                owned(&[("ville", "Zürich"), ("k=v", "a,b\\c")])
            )]
        );
    }

    #[test]
    fn macros_format_the_message_and_stringify_keys_with_display_values() {
        let n = 3;
        let table = String::from("hosts");
        crate::info!("seen {n} points in {}", "cpu"; table = table, rows = 2 + 1, ratio = 0.5);
        assert_eq!(
            take(),
            [(
                Level::Info,
                "seen 3 points in cpu".to_owned(),
                owned(&[("table", "hosts"), ("rows", "3"), ("ratio", "0.5")])
            )]
        );
    }

    #[test]
    fn macros_without_fields_send_none_and_accept_a_trailing_comma() {
        crate::warn!("plain");
        crate::error!("{}-{}", 1, 2);
        crate::debug!("with"; only = true,);
        assert_eq!(
            take(),
            [
                (Level::Warn, "plain".to_owned(), vec![]),
                (Level::Error, "1-2".to_owned(), vec![]),
                (Level::Debug, "with".to_owned(), owned(&[("only", "true")])),
            ]
        );
    }

    #[test]
    fn macro_field_values_use_display_not_debug() {
        // Debug would quote the string.
        let unit = "°C";
        crate::info!("unit"; unit = unit, extreme = i64::MIN, big = u64::MAX);
        assert_eq!(
            take(),
            [(
                Level::Info,
                "unit".to_owned(),
                owned(&[
                    ("unit", "°C"),
                    ("extreme", "-9223372036854775808"),
                    ("big", "18446744073709551615"),
                ])
            )]
        );
    }
}

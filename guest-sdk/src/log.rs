//! Structured logging into the host's log (tagged with the plugin's name and version).
//! The host keeps at most 100 records per batch.
//!
//! Functions take `(key, value)` fields; the macros [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error) format the
//! message and take `key = value` fields after a `;`.

use crate::bindings::iface::log::log;

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

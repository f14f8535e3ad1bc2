//! The plugin's parameters, from the pipeline stage configuration (or `--param` of
//! `sluice plugin run`).

use std::str::FromStr;

use crate::PluginError;
use crate::bindings::iface::params as wit;

/// The value of parameter `name`.
pub fn get(name: &str) -> Option<String> {
    wit::get(name)
}

/// The value of parameter `name`, or `default`.
pub fn get_or(name: &str, default: &str) -> String {
    get(name).unwrap_or_else(|| default.to_owned())
}

/// Parameter `name` parsed as `T`; none when unset.
///
/// # Errors
/// A [`PluginError`] naming the parameter and the value that doesn't parse.
pub fn parse<T: FromStr>(name: &str) -> Result<Option<T>, PluginError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| PluginError::new(format!("parameter `{name}` = `{raw}`: {e}"))),
    }
}

/// Parameter `name` as a comma-separated list of trimmed, non-empty items.
pub fn list(name: &str) -> Vec<String> {
    get(name)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every parameter, sorted by name.
pub fn all() -> Vec<(String, String)> {
    wit::all()
}

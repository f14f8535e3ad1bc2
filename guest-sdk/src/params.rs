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
    parse_value(name, get(name).as_deref())
}

/// The logic of [`parse`] without the host: `raw` is the value of parameter `name`.
fn parse_value<T: FromStr>(name: &str, raw: Option<&str>) -> Result<Option<T>, PluginError>
where
    T::Err: std::fmt::Display,
{
    match raw {
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
    get(name).map(|raw| split_list(&raw)).unwrap_or_default()
}

/// The logic of [`list`] without the host: the trimmed, non-empty items of `raw`.
fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every parameter, sorted by name.
pub fn all() -> Vec<(String, String)> {
    wit::all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message `parse` gives for `raw`, built from the parser's own error text.
    fn expected_error<T: FromStr>(name: &str, raw: &str) -> String
    where
        T::Err: std::fmt::Display,
    {
        let Err(e) = raw.trim().parse::<T>() else {
            panic!("`{raw}` parses");
        };
        format!("parameter `{name}` = `{raw}`: {e}")
    }

    #[test]
    fn unset_parameter_is_none_not_an_error() {
        assert_eq!(parse_value::<f64>("max", None), Ok(None));
        assert_eq!(parse_value::<String>("name", None), Ok(None));
    }

    #[test]
    fn value_is_trimmed_before_parsing() {
        assert_eq!(parse_value::<f64>("max", Some(" 2.5\t")), Ok(Some(2.5)));
        assert_eq!(parse_value::<u32>("n", Some("\n42 ")), Ok(Some(42)));
        assert_eq!(
            parse_value::<String>("m", Some("  swap* ")),
            Ok(Some("swap*".to_owned()))
        );
    }

    #[test]
    fn bad_value_names_parameter_value_and_reason_for_the_whole_batch() {
        let err = parse_value::<f64>("max", Some("abc")).unwrap_err();
        assert_eq!(err.message, expected_error::<f64>("max", "abc"));
        assert!(
            err.message.starts_with("parameter `max` = `abc`: "),
            "{}",
            err.message
        );
        assert_eq!(err.index, None, "a parameter error fails the whole batch");
    }

    #[test]
    fn error_shows_the_value_as_given_untrimmed() {
        // The surrounding spaces are part of what the user wrote: the message shows them.
        let err = parse_value::<i64>("n", Some(" 1.5 ")).unwrap_err();
        assert_eq!(err.message, expected_error::<i64>("n", " 1.5 "));
        assert!(err.message.contains("` 1.5 `"), "{}", err.message);
    }

    #[test]
    fn empty_value_is_an_error_for_numbers_but_an_empty_string_for_strings() {
        let err = parse_value::<u64>("limit", Some("   ")).unwrap_err();
        assert_eq!(err.message, expected_error::<u64>("limit", "   "));
        assert_eq!(
            parse_value::<String>("prefix", Some("")),
            Ok(Some(String::new()))
        );
    }

    #[test]
    fn integer_extremes_parse_and_one_past_them_fails() {
        assert_eq!(
            parse_value::<i64>("lo", Some("-9223372036854775808")),
            Ok(Some(i64::MIN))
        );
        assert_eq!(
            parse_value::<i64>("hi", Some("9223372036854775807")),
            Ok(Some(i64::MAX))
        );
        assert_eq!(
            parse_value::<u64>("hi", Some("18446744073709551615")),
            Ok(Some(u64::MAX))
        );
        for (raw, name) in [
            ("9223372036854775808", "hi"),
            ("-9223372036854775809", "lo"),
        ] {
            let err = parse_value::<i64>(name, Some(raw)).unwrap_err();
            assert_eq!(err.message, expected_error::<i64>(name, raw));
        }
        let err = parse_value::<u64>("hi", Some("18446744073709551616")).unwrap_err();
        assert_eq!(
            err.message,
            expected_error::<u64>("hi", "18446744073709551616")
        );
        let err = parse_value::<u64>("count", Some("-1")).unwrap_err();
        assert_eq!(err.message, expected_error::<u64>("count", "-1"));
    }

    #[test]
    fn booleans_parse_only_true_and_false() {
        assert_eq!(parse_value::<bool>("on", Some("true")), Ok(Some(true)));
        assert_eq!(parse_value::<bool>("on", Some(" false ")), Ok(Some(false)));
        let err = parse_value::<bool>("on", Some("yes")).unwrap_err();
        assert_eq!(err.message, expected_error::<bool>("on", "yes"));
    }

    #[test]
    fn non_ascii_values_parse_and_appear_intact_in_errors() {
        assert_eq!(
            parse_value::<String>("unit", Some(" °C ")),
            Ok(Some("°C".to_owned()))
        );
        let err = parse_value::<f64>("seuil", Some("zéro🚀")).unwrap_err();
        assert!(
            err.message.starts_with("parameter `seuil` = `zéro🚀`: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn list_splits_on_commas_trims_and_drops_empty_items() {
        assert_eq!(split_list("a, b ,,c,"), ["a", "b", "c"]);
        assert_eq!(split_list(" cpu "), ["cpu"]);
        // Only commas separate: other punctuation stays inside an item.
        assert_eq!(split_list("a;b, c d"), ["a;b", "c d"]);
    }

    #[test]
    fn list_of_nothing_is_empty() {
        assert!(split_list("").is_empty());
        assert!(split_list(" , ,\t,").is_empty());
    }

    #[test]
    fn list_keeps_non_ascii_items_and_order() {
        assert_eq!(
            split_list("zürich, 東京 ,🚀,zürich"),
            ["zürich", "東京", "🚀", "zürich"]
        );
    }
}

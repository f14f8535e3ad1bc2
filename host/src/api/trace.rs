//! The request span of the HTTP trace layer, with secrets taken out of the URI: InfluxDB 1
//! clients send their token as the password `p`, and a log must never hold a token, at any
//! level, the wrong ones tried included.

use axum::http::{Request, Uri};

/// Query parameters whose values are secrets (compared in lower case).
const SECRET_PARAMS: [&str; 6] = [
    "p",
    "password",
    "token",
    "access_token",
    "api_key",
    "apikey",
];

/// `uri` with the values of secret query parameters replaced by `***`.
pub fn redacted_uri(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded: String = form_urlencoded::parse(key.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect();
            if SECRET_PARAMS.contains(&decoded.to_ascii_lowercase().as_str()) {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

/// The span of one request: method and redacted URI (never headers, which carry tokens).
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %redacted_uri(request.uri()),
        version = ?request.version(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parameters_are_redacted_and_others_kept() {
        let uri: Uri = "/write?db=x&u=me&p=s3cret-token&precision=s"
            .parse()
            .expect("uri");
        assert_eq!(redacted_uri(&uri), "/write?db=x&u=me&p=***&precision=s");
        // Encoded names, odd case and a parameter without `=` are caught too.
        let uri: Uri = "/write?%70=s3cret&Token=s3cret&password"
            .parse()
            .expect("uri");
        let out = redacted_uri(&uri);
        assert!(!out.contains("s3cret"), "{out}");
        assert_eq!(out, "/write?%70=***&Token=***&password=***");
        let uri: Uri = "/health".parse().expect("uri");
        assert_eq!(redacted_uri(&uri), "/health");
    }
}

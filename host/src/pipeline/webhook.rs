//! Alert delivery to a webhook: `POST` of `{"tenant": ..., "alerts": [...]}` as JSON, with a
//! timeout, off the pipeline threads. Delivery is best effort (failures are logged and
//! counted); the stored alerts (`GET /api/v1/alerts`) are the durable record.
//!
//! Plain `http://` only: a TLS stack is a heavy dependency for a first cut; put a local relay
//! in front of an `https://` receiver.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::point::Alert;
use crate::tenant::TenantId;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook receiver.
#[derive(Clone)]
pub struct Webhook {
    uri: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

/// A webhook URL is unusable.
#[derive(Debug, thiserror::Error)]
#[error("webhook_url `{url}`: {reason}")]
pub struct WebhookError {
    url: String,
    reason: String,
}

impl Webhook {
    /// A webhook posting to `url`, driven by `runtime`.
    ///
    /// # Errors
    /// When `url` is not an `http://` URL.
    pub fn new(url: &str, runtime: tokio::runtime::Handle) -> Result<Self, WebhookError> {
        let err = |reason: &str| WebhookError {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: hyper::Uri = url.parse().map_err(|_| err("not a URL"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(err("only http://HOST[:PORT]/PATH is supported"));
        }
        Ok(Self {
            uri,
            client: Client::builder(TokioExecutor::new()).build_http(),
            runtime,
        })
    }

    /// Sends `alerts` in the background.
    pub fn send(&self, tenant: &TenantId, alerts: &[Alert]) {
        let body = serde_json::json!({ "tenant": tenant, "alerts": alerts }).to_string();
        let this = self.clone();
        self.runtime.spawn(async move {
            let request = hyper::Request::post(this.uri.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)));
            let Ok(request) = request else { return };
            match tokio::time::timeout(TIMEOUT, this.client.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => {}
                Ok(Ok(response)) => tracing::warn!(status = %response.status(), uri = %this.uri, "Webhook refused alerts."),
                Ok(Err(error)) => tracing::warn!(%error, uri = %this.uri, "Webhook delivery failed."),
                Err(_) => tracing::warn!(uri = %this.uri, "Webhook delivery timed out."),
            }
        });
    }
}

//! A small REST client for the CLI: JSON in and out, problem+json errors turned into readable
//! messages.

use anyhow::{Context, anyhow};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Client of one node's REST API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// Client for the node named by `--server`, with `--token` and `--ca-cert`.
    pub fn from_args(args: &super::ClientArgs) -> anyhow::Result<Self> {
        Self::new(&args.server, args.token.clone(), args.ca_cert.as_deref())
    }

    /// Client for the node at `server` (e.g. `http://127.0.0.1:5000`), trusting `ca_cert`
    /// (PEM) for `https://` besides the system's roots.
    pub fn new(
        server: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(anyhow!(
                "server {server:?} must start with http:// or https://"
            ));
        }
        let mut http = reqwest::Client::builder();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read CA certificate {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            http = http.add_root_certificate(cert);
        }
        Ok(Self {
            base,
            token,
            http: http.build().context("cannot build HTTP client")?,
        })
    }

    /// A request to `path` (starting with `/`), with the bearer token when set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends and decodes a JSON answer; a non-2xx answer becomes an error with the
    /// problem's detail.
    pub async fn json(&self, builder: RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send(builder).await?;
        response
            .json()
            .await
            .context("the server sent invalid JSON")
    }

    /// Sends and checks the status; a non-2xx answer becomes an error.
    pub async fn send(&self, builder: RequestBuilder) -> anyhow::Result<Response> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        Err(anyhow!("{status}: {detail}"))
    }

    /// GET a JSON resource.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.request(Method::GET, path)).await
    }
}

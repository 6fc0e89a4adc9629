//! A small REST client for the CLI: JSON in and out, problem+json errors turned into readable
//! messages.

use anyhow::{Context, anyhow};
use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// First and longest wait between the attempts of a write.
const RETRY_DELAYS: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

/// A write's answer: the entry, and whether the node replayed it from an earlier attempt.
#[derive(Debug)]
pub struct WriteAnswer {
    /// The entry as JSON.
    pub entry: Value,
    /// `Idempotent-Replayed: true`: an earlier attempt (whose answer was lost) wrote it.
    pub replayed: bool,
}

/// Why one attempt of a write failed.
enum Attempt {
    /// Worth another attempt: the node could not be reached or answered 503 (after
    /// `Retry-After` when it sent one).
    Transient(anyhow::Error, Option<Duration>),
    /// Final: the node answered and refused.
    Final(anyhow::Error),
}

/// The longest a client command waits for a node to accept its connection.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
        Self::new(
            &args.server,
            args.token.clone(),
            args.ca_cert.as_deref(),
            args.read_timeout,
        )
    }

    /// Client for the node at `server` (e.g. `http://127.0.0.1:5000`), trusting `ca_cert`
    /// (PEM) for `https://` besides the system's roots.
    pub fn new(
        server: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
        read_timeout: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(anyhow!(
                "server {server:?} must start with http:// or https://"
            ));
        }
        // Every call has a deadline: a node that does not accept within CONNECT_TIMEOUT, or
        // stays silent for `read_timeout` before or within an answer, fails the command.
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout);
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
        Err(refusal(response).await)
    }

    /// Sends a write — `method` on `path` with the JSON `body` — under one fresh
    /// `Idempotency-Key`, retrying up to `retries` times after a transient failure
    /// (connection error or 503) with exponential backoff. The key makes the retries safe: a
    /// write whose answer was lost is answered from the node's record instead of being made
    /// again.
    pub async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        retries: usize,
    ) -> anyhow::Result<WriteAnswer> {
        // Time-ordered (UUIDv7): a hub's key index then grows at one end.
        let key = format!("\"{}\"", uuid::Uuid::now_v7());
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(RETRY_DELAYS.0)
            .with_max_delay(RETRY_DELAYS.1)
            .with_jitter()
            .with_max_times(retries)
            .build();
        loop {
            let attempt = self
                .request(method.clone(), path)
                .header("idempotency-key", &key)
                .json(body);
            let failure = match attempt.send().await {
                Err(e) => Attempt::Transient(
                    anyhow::Error::new(e).context(format!("cannot reach {}", self.base)),
                    None,
                ),
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    let wait = retry_after(&r);
                    Attempt::Transient(refusal(r).await, wait)
                }
                Ok(r) if r.status().is_success() => {
                    let replayed = r
                        .headers()
                        .get("idempotent-replayed")
                        .is_some_and(|v| v == "true");
                    let entry = r.json().await.context("the server sent invalid JSON")?;
                    return Ok(WriteAnswer { entry, replayed });
                }
                Ok(r) => Attempt::Final(refusal(r).await),
            };
            match failure {
                Attempt::Final(e) => return Err(e),
                Attempt::Transient(e, wait) => match delays.next() {
                    Some(delay) => {
                        let delay = wait.map_or(delay, |w| w.clamp(delay, RETRY_DELAYS.1));
                        eprintln!(
                            "{e:#}; retrying in {} ms with the same Idempotency-Key",
                            delay.as_millis()
                        );
                        tokio::time::sleep(delay).await;
                    }
                    None => {
                        return Err(e.context(format!("gave up after {retries} retries")));
                    }
                },
            }
        }
    }

    /// GET a JSON resource.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.request(Method::GET, path)).await
    }

    /// GET a text resource.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .request(Method::GET, path)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        Ok(response.text().await?)
    }
}

/// A non-2xx answer as an error: status and the problem's detail.
async fn refusal(response: Response) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or(text);
    anyhow!("{status}: {detail}")
}

/// The `Retry-After` of an answer, in seconds.
fn retry_after(response: &Response) -> Option<Duration> {
    let seconds = response.headers().get("retry-after")?.to_str().ok()?;
    seconds.trim().parse().ok().map(Duration::from_secs)
}

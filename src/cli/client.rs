//! The CLI's HTTP client: the service URL and connection flags, and one
//! request with its whole answer, over `reqwest` (http:// or https://
//! through rustls, proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`).
//!
//! Both waits are bounded and named in the error: connecting
//! (`--connect-timeout`) and the service's silence once connected
//! (`--read-timeout`, never shorter than the run's own limit plus a margin,
//! since the service sends nothing while the script runs).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};

/// How much longer than the run's own limit the answer may take: the
/// service's queueing, start-up of the run and the reply.
const READ_MARGIN: Duration = Duration::from_secs(30);

/// The flags every subcommand shares: where the service is and how long to wait for it.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// The pyexec service (http:// or https://, optionally with a path prefix).
    #[arg(long, global = true, env = "PYEXEC_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API token, sent as `Authorization: Bearer TOKEN`. Prefer the
    /// environment variable: other users can read a flag in `ps`.
    #[arg(long, global = true, env = "PYEXEC_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long connecting to the service may take, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// How long the connected service may stay silent, in seconds; never
    /// less than the run's --timeout plus 30 s.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 120.0)]
    pub read_timeout: f64,
}

/// Why a request got no answer, or could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http(s)://host[:port][/prefix]` URL.
    #[error("invalid --url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timeout flag that is not a positive number of seconds.
    #[error("invalid value for --{flag}: {value} is not a positive number of seconds")]
    InvalidTimeout {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value given.
        value: f64,
    },
    /// The HTTP client cannot be built (e.g. no TLS roots).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// No connection to the service.
    #[error(
        "cannot reach the pyexec service at {address} ({url}): {reason}; is `pyexec serve` running there?"
    )]
    Unreachable {
        /// `host:port`.
        address: String,
        /// The URL as given.
        url: String,
        /// The OS or TLS error, or the connect timeout.
        reason: String,
    },
    /// Connected, but no whole answer within the read timeout.
    #[error(
        "the pyexec service at {address} sent nothing for {secs} s; \
         pass a larger --read-timeout if the run needs longer"
    )]
    Silent {
        /// `host:port`.
        address: String,
        /// The read timeout in force.
        secs: f64,
    },
    /// Connected, but the HTTP exchange broke off.
    #[error("the pyexec service at {address} did not answer: {reason}")]
    NoAnswer {
        /// `host:port`.
        address: String,
        /// The client's account of it.
        reason: String,
    },
}

impl ClientError {
    /// Whether the command line is at fault (exit 64) rather than the service or the host (69).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::InvalidUrl { .. } | Self::InvalidTimeout { .. })
    }
}

/// The service's answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After`, when the service sent one.
    pub retry_after: Option<String>,
    /// The whole body.
    pub body: Bytes,
}

/// Where the service is: its base URL (path prefix without trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    base: Url,
    given: String,
}

impl ServiceUrl {
    /// Parses `http(s)://host[:port][/prefix]`.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for another scheme, a missing host, a
    /// query or fragment.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl { url: url.into(), reason };
        if !url.contains("://") {
            return Err(invalid("missing http:// (e.g. http://127.0.0.1:8080)"));
        }
        let base = Url::parse(url).map_err(|_| invalid("not a URL like http://127.0.0.1:8080"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("only http:// and https:// are supported"));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("missing host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("must not carry credentials; pass the token with PYEXEC_API_TOKEN"));
        }
        Ok(Self { base, given: url.to_string() })
    }

    /// The URL of `path` (e.g. `/sessions`) under the URL's prefix.
    pub fn route(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// `host:port` (IPv6 bracketed), for messages.
    fn address(&self) -> String {
        // `host_str` keeps an IPv6 literal bracketed.
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

/// A client for one service, with the timeouts of one command.
#[derive(Debug)]
pub struct Service {
    url: ServiceUrl,
    token: Option<String>,
    client: reqwest::Client,
    connect: Duration,
    read: Duration,
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, ClientError> {
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(ClientError::InvalidTimeout { flag, value }),
    }
}

impl Service {
    /// A client for `connection`; `run_timeout` is the run's own limit, when
    /// given, which the read timeout then covers.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] / [`ClientError::InvalidTimeout`] for bad
    /// flags, [`ClientError::Setup`] when the client cannot be built.
    pub fn new(connection: &Connection, run_timeout: Option<f64>) -> Result<Self, ClientError> {
        let url = ServiceUrl::parse(&connection.url)?;
        let connect = seconds("connect-timeout", connection.connect_timeout)?;
        let mut read = seconds("read-timeout", connection.read_timeout)?;
        if let Some(run) = run_timeout.and_then(|secs| Duration::try_from_secs_f64(secs).ok()) {
            read = read.max(run.saturating_add(READ_MARGIN));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(read)
            .user_agent(concat!("pyexec-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Setup(reason(&error)))?;
        Ok(Self { url, token: connection.token.clone(), client, connect, read })
    }

    /// Sends one request to `path` (`body`, when not empty, as JSON) and
    /// reads the whole answer.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when no connection can be made,
    /// [`ClientError::Silent`] when the read timeout passes,
    /// [`ClientError::NoAnswer`] when the exchange breaks off.
    pub async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
        let mut request = self.client.request(method, self.url.route(path));
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        }
        if let Some(token) = &self.token {
            // A token with bytes a header cannot carry is sent as nothing: the
            // service then answers 401, which says what to fix.
            if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                request = request.header(AUTHORIZATION, value);
            }
        }
        let response = request.send().await.map_err(|error| self.failure(&error))?;
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|value| value.to_str().ok()).map(str::to_string);
        let body = response.bytes().await.map_err(|error| self.failure(&error))?;
        Ok(Answer { status, retry_after, body })
    }

    fn failure(&self, error: &reqwest::Error) -> ClientError {
        let address = self.url.address();
        if error.is_connect() {
            let reason = if error.is_timeout() {
                format!("no connection within {} s (--connect-timeout)", self.connect.as_secs_f64())
            } else {
                reason(error)
            };
            let reason = if self.url.base.scheme() == "https" && tls_failed(error) {
                // pyexec serves plain HTTP; https needs a TLS proxy in front.
                format!("{reason} (TLS handshake; pyexec itself serves http://, https needs a TLS proxy)")
            } else {
                reason
            };
            ClientError::Unreachable { address, url: self.url.given.clone(), reason }
        } else if error.is_timeout() {
            ClientError::Silent { address, secs: self.read.as_secs_f64() }
        } else {
            ClientError::NoAnswer { address, reason: reason(error) }
        }
    }
}

/// Whether the handshake failed: tokio-rustls reports TLS errors as `InvalidData`.
fn tls_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// The innermost cause ("Connection refused (os error 111)", "invalid peer
/// certificate: ..."), which says more than reqwest's "error sending request".
fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> ServiceUrl {
        ServiceUrl::parse(url).expect("valid URL")
    }

    #[test]
    fn parses_host_port_and_prefix() {
        let url = parse("http://127.0.0.1:8080");
        assert_eq!((url.address(), url.route("/execute").path()), ("127.0.0.1:8080".into(), "/execute"));
        let url = parse("http://example.internal/pyexec/");
        assert_eq!(
            (url.address(), url.route("/execute").path()),
            ("example.internal:80".into(), "/pyexec/execute")
        );
        let url = parse("https://example.internal");
        assert_eq!(url.address(), "example.internal:443");
        let url = parse("http://[::1]:9000");
        assert_eq!(url.address(), "[::1]:9000");
    }

    #[test]
    fn refuses_what_it_cannot_talk_to() {
        for (url, reason) in [
            ("ftp://example.com", "only http:// and https://"),
            ("127.0.0.1:8080", "missing http://"),
            ("http://host/?q=1", "query"),
            ("http://user:pw@host/", "credentials"),
            ("not a url", "missing http://"),
            ("http://", "not a URL"),
        ] {
            let error = ServiceUrl::parse(url).expect_err(url).to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    fn connection(connect: f64, read: f64) -> Connection {
        Connection {
            url: "http://127.0.0.1:1".into(),
            token: None,
            connect_timeout: connect,
            read_timeout: read,
        }
    }

    #[test]
    fn timeouts_are_positive_and_the_read_timeout_covers_the_run() {
        for (connect, read, flag) in [(0.0, 1.0, "--connect-timeout"), (1.0, f64::NAN, "--read-timeout")] {
            let error = Service::new(&connection(connect, read), None).expect_err(flag).to_string();
            assert!(error.starts_with(&format!("invalid value for {flag}")), "{error}");
        }
        let service = Service::new(&connection(5.0, 120.0), Some(600.0)).expect("client");
        assert_eq!(service.read, Duration::from_secs(630));
        let service = Service::new(&connection(5.0, 120.0), Some(2.0)).expect("client");
        assert_eq!(service.read, Duration::from_secs(120));
    }
}

//! One `POST /execute` over plain HTTP/1.1: parse the service URL, connect,
//! send the JSON body, read the whole answer.
//!
//! A bare hyper 1 client connection over a `TcpStream` is all one request
//! needs; no pool, no TLS (pyexec itself serves plain HTTP on loopback or
//! behind a proxy).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long connecting to the service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the service is: host, port and the path of its `/execute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    host: String,
    port: u16,
    execute: Uri,
    /// The URL's path prefix (no trailing `/`), for the other routes.
    prefix: String,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http://host[:port][/prefix]` URL.
    #[error("invalid --url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No TCP connection to the service.
    #[error("cannot reach the pyexec service at {address}: {reason}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// The OS error or "timed out".
        reason: String,
    },
    /// Connected, but the HTTP exchange broke off.
    #[error("the pyexec service at {address} did not answer: {reason}")]
    NoAnswer {
        /// `host:port`.
        address: String,
        /// hyper's account of it.
        reason: String,
    },
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

impl ServiceUrl {
    /// Parses `http://host[:port][/prefix]`.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for another scheme, a missing host, a
    /// query or fragment.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl { url: url.into(), reason };
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL like http://127.0.0.1:8080"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(invalid("only http:// is supported")),
            None => return Err(invalid("missing http:// (e.g. http://127.0.0.1:8080)")),
        }
        let host = uri.host().filter(|host| !host.is_empty()).ok_or_else(|| invalid("missing host"))?;
        if uri.query().is_some() {
            return Err(invalid("must not have a query"));
        }
        // IPv6 literals come back bracketed; connect() wants them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let execute = format!("{}/execute", uri.path().trim_end_matches('/'))
            .parse()
            .map_err(|_| invalid("its path cannot carry /execute"))?;
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Self { host, port: uri.port_u16().unwrap_or(80), execute, prefix })
    }

    /// The URI of `path` (e.g. `/sessions`) under the URL's prefix.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when `path` cannot be part of a URI.
    pub fn route(&self, path: &str) -> Result<Uri, ClientError> {
        let full = format!("{}{path}", self.prefix);
        full.parse().map_err(|_| ClientError::InvalidUrl { url: full.clone(), reason: "not a valid path" })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// POSTs `body` (JSON) to `/execute` and reads the whole answer.
///
/// # Errors
/// [`ClientError::Unreachable`] when no connection can be made,
/// [`ClientError::NoAnswer`] when the exchange breaks off.
pub async fn post_execute(
    url: &ServiceUrl,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, ClientError> {
    send(url, Method::POST, url.execute.clone(), token, body).await
}

/// Sends one request (`body`, when not empty, as JSON) and reads the whole answer.
///
/// # Errors
/// As [`post_execute`].
pub async fn send(
    url: &ServiceUrl,
    method: Method,
    uri: Uri,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, ClientError> {
    let address = url.address();
    let unreachable = |reason: String| ClientError::Unreachable { address: address.clone(), reason };
    let no_answer =
        |error: hyper::Error| ClientError::NoAnswer { address: address.clone(), reason: error.to_string() };

    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .map_err(|_| unreachable(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|error| unreachable(error.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(no_answer)?;
    let driver = tokio::spawn(connection);

    let has_body = !body.is_empty();
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    if let Ok(host) = HeaderValue::from_str(&address) {
        headers.insert(HOST, host);
    }
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(concat!("pyexec-cli/", env!("CARGO_PKG_VERSION"))));
    if let Some(token) = token {
        // A token with bytes a header cannot carry is sent as nothing: the
        // service then answers 401, which says what to fix.
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(AUTHORIZATION, value);
        }
    }

    let response = sender.send_request(request).await.map_err(no_answer)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().collect().await.map_err(no_answer)?.to_bytes();
    driver.abort();
    Ok(Answer { status, retry_after, body })
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
        assert_eq!((url.address(), url.execute.to_string()), ("127.0.0.1:8080".into(), "/execute".into()));
        let url = parse("http://example.internal/pyexec/");
        assert_eq!(
            (url.address(), url.execute.to_string()),
            ("example.internal:80".into(), "/pyexec/execute".into())
        );
        let url = parse("http://[::1]:9000");
        assert_eq!((url.host.as_str(), url.address()), ("::1", "[::1]:9000".into()));
    }

    #[test]
    fn refuses_what_it_cannot_talk_to() {
        for (url, reason) in [
            ("https://example.com", "only http://"),
            ("127.0.0.1:8080", "missing http://"),
            ("http://host/?q=1", "query"),
            ("not a url", "not a URL"),
        ] {
            let error = ServiceUrl::parse(url).expect_err(url).to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }
}

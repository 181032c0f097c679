//! The one small HTTP/1 client the host needs: the plugin `http` capability's GET to an
//! allowlisted host, and the CLI's calls to a running admin server. Plain HTTP over one
//! fresh connection per request; both callers reach loopback or in-cluster services, and
//! neither wants connection pooling or redirects (a redirect could leave the allowlist).

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;

/// A request to `addr` (`host:port`).
pub struct Request<'a> {
    /// `host:port` to connect to; also sent as the `Host` header.
    pub addr: &'a str,
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Extra headers.
    pub headers: &'a [(hyper::header::HeaderName, String)],
    /// The request body (empty for GET).
    pub body: Vec<u8>,
    /// Largest response body accepted.
    pub max_body: usize,
}

/// A whole response.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: hyper::HeaderMap,
    /// The body, at most `max_body` bytes.
    pub body: Bytes,
}

/// Why a request failed, in words fit for an error message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection failed.
    #[error("connect {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// HTTP failed after connecting.
    #[error("{0}")]
    Http(String),
    /// The body exceeded `max_body`.
    #[error("body: {reason} (cap {max_body} bytes)")]
    Body {
        /// What the body reader said.
        reason: String,
        /// The cap.
        max_body: usize,
    },
}

/// Send `req` and read the whole response.
pub async fn send(req: Request<'_>) -> Result<Response, ClientError> {
    let stream = tokio::net::TcpStream::connect(req.addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: req.addr.to_owned(),
            source,
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(req.method)
        .uri(req.path)
        .header(hyper::header::HOST, req.addr);
    for (name, value) in req.headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, req.max_body)
        .collect()
        .await
        .map_err(|e| ClientError::Body {
            reason: e.to_string(),
            max_body: req.max_body,
        })?
        .to_bytes();
    Ok(Response {
        status,
        headers: parts.headers,
        body,
    })
}

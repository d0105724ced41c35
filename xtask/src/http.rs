//! Plain-HTTP GET requests with streaming bodies (ureq, no TLS).
//!
//! A 404 is reported as [`HttpError::NotFound`] so callers can explain what a missing
//! file means for them (a pinned package gone from the mirror, say).

use std::fmt;
use std::io::Read;
use std::time::Duration;

/// A GET request that did not produce a body.
#[derive(Debug)]
pub enum HttpError {
    /// The server answered 404.
    NotFound {
        /// The requested URL.
        url: String,
    },
    /// Any other failure: connection, timeout, another status.
    Failed {
        /// The requested URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::NotFound { url } => write!(f, "GET {url}: 404 not found"),
            HttpError::Failed { url, message } => write!(f, "GET {url}: {message}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A response body being read, with the length the server announced (if any).
pub struct Body {
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    /// The body; reading fails if the connection ends before `length` bytes.
    pub reader: Box<dyn Read + Send>,
}

/// Sends `GET url` and returns the body of a 2xx answer.
pub fn get(url: &str) -> Result<Body, HttpError> {
    let config = ureq::Agent::config_builder()
        // Statuses are checked below, to tell 404 apart.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // No limit for a whole 70 MB body, but a stalled connection fails.
        .timeout_recv_body(None)
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent("binfmt-xtask")
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let response = agent.get(url).call().map_err(|err| HttpError::Failed {
        url: url.to_string(),
        message: err.to_string(),
    })?;
    let status = response.status();
    if status == 404 {
        return Err(HttpError::NotFound {
            url: url.to_string(),
        });
    }
    if !status.is_success() {
        return Err(HttpError::Failed {
            url: url.to_string(),
            message: format!("server answered {status}"),
        });
    }
    let body = response.into_body();
    Ok(Body {
        length: body.content_length(),
        reader: Box::new(body.into_reader()),
    })
}

//! Errors of the registry client. Each names the URL or registry at fault.

/// Errors of `cargohold-registry`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be sent or the response not read.
    #[error("request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url} answered {status}{}", describe_body(body))]
    Status {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body (the registry's error JSON).
        body: String,
    },
    /// Authentication failed or cannot be done.
    #[error("cannot authenticate to {registry}: {reason}")]
    Auth {
        /// The registry.
        registry: String,
        /// Why.
        reason: String,
    },
    /// A credentials file or credential helper could not be used.
    #[error("credentials from {path}: {reason}")]
    Credentials {
        /// The file or helper program.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A TLS file (a `certs.d` CA, client certificate or key) is unusable.
    #[error("TLS setup from {path}: {reason}")]
    Tls {
        /// The file or directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration file (`registries.conf`) is unusable.
    #[error("{path}: {reason}")]
    Config {
        /// The file, with the line when known.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry is blocked by configuration (`registries.conf`).
    #[error("registry {registry} is blocked in {source_file}")]
    Blocked {
        /// The registry (or prefix) as the configuration names it.
        registry: String,
        /// The configuration file that blocks it.
        source_file: String,
    },
    /// The registry sent content that does not match its digest.
    #[error("{url} returned content with digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The URL.
        url: String,
        /// What was asked for (or announced).
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// A response larger than its kind may be (a manifest, a token, a page
    /// of a list): a registry is hostile input.
    #[error("{url} returned more than {limit} bytes (refused: more than such a response may take)")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// A problem with the image data itself.
    #[error(transparent)]
    Image(Box<cargohold_image_core::Error>),
    /// The async runtime could not start.
    #[error("could not start the network runtime")]
    Runtime(#[source] std::io::Error),
}

impl From<cargohold_image_core::Error> for Error {
    fn from(e: cargohold_image_core::Error) -> Self {
        Error::Image(Box::new(e))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an error body says, for people: the distribution spec's
/// `{"errors": [{"code", "message"}]}` as `message (CODE)`, anything else
/// trimmed as it is; with `: ` before it, or nothing for an empty body.
fn describe_body(body: &str) -> String {
    let said = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let errors = v.get("errors")?.as_array()?;
            let parts: Vec<String> = errors
                .iter()
                .filter_map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
                    let message = e.get("message").and_then(|m| m.as_str()).unwrap_or_default();
                    match (message.is_empty(), code.is_empty()) {
                        (true, true) => None,
                        (false, false) => Some(format!("{message} ({code})")),
                        (false, true) => Some(message.to_owned()),
                        (true, false) => Some(code.to_owned()),
                    }
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        })
        .unwrap_or_else(|| body.trim().to_owned());
    if said.is_empty() { String::new() } else { format!(": {said}") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_bodies_read_as_the_registry_meant_them() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(super::describe_body(body), ": manifest unknown (MANIFEST_UNKNOWN)");
        assert_eq!(super::describe_body("  <html>bad gateway</html>\n"), ": <html>bad gateway</html>");
        assert_eq!(super::describe_body(""), "");
        assert_eq!(super::describe_body(r#"{"errors":[]}"#), r#": {"errors":[]}"#);
    }
}

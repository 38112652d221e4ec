//! Shared-secret authentication: workers send `authorization: Bearer <token>`; the server
//! compares it in constant time and answers UNAUTHENTICATED otherwise.
//!
//! The token comes from a file (first line, whitespace trimmed) or an environment variable,
//! never from the command line (where other users could read it in the process list).
//! Without TLS the token crosses the network in clear text: use TLS beyond a trusted network.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::config::AuthConfig;
use crate::error::{ConfigError, PsError};
use crate::server::ParamServer;

/// The metadata key carrying the token.
pub const AUTH_HEADER: &str = "authorization";

/// Reads the token configured in `cfg` (`None` when neither a file nor a variable is given).
pub fn load_token(cfg: &AuthConfig) -> Result<Option<String>, PsError> {
    let token = if let Some(path) = &cfg.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| PsError::Io {
            path: path.clone(),
            source,
        })?;
        // The first line, trimmed: what follows it (a comment, a second secret) is not sent.
        let first = text.lines().next().unwrap_or("");
        Some((first.trim().to_string(), "auth.token_file"))
    } else if let Some(var) = &cfg.token_env {
        let value = std::env::var(var).map_err(|_| {
            ConfigError::new(
                "auth.token_env",
                format!("environment variable {var} is not set"),
            )
        })?;
        Some((value.trim().to_string(), "auth.token_env"))
    } else {
        None
    };
    match token {
        Some((t, field)) if t.is_empty() => {
            Err(ConfigError::new(field, "the token is empty").into())
        }
        Some((t, field)) if MetadataValue::try_from(format!("Bearer {t}")).is_err() => {
            Err(ConfigError::new(field, "the token must be printable ASCII").into())
        }
        Some((t, _)) => Ok(Some(t)),
        None => Ok(None),
    }
}

/// Server-side check of the token, as a tonic interceptor; counts refusals.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<[u8]>>,
    server: Arc<ParamServer>,
}

impl TokenCheck {
    /// Checks for `token` (`None`: every call is let through).
    pub fn new(token: Option<String>, server: Arc<ParamServer>) -> Self {
        Self {
            expected: token.map(|t| Arc::from(format!("Bearer {t}").into_bytes())),
            server,
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let ok = request
            .metadata()
            .get(AUTH_HEADER)
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected)));
        if ok {
            Ok(request)
        } else {
            self.server.count_refusal(|r| r.unauthenticated += 1);
            Err(Status::unauthenticated(
                "missing or wrong token: send `authorization: Bearer <token>` with the shared secret",
            ))
        }
    }
}

/// Client-side: adds the token to every call.
#[derive(Clone, Default)]
pub struct AddToken {
    value: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl AddToken {
    /// Sends `token` (`None`: sends nothing).
    pub fn new(token: Option<&str>) -> Result<Self, PsError> {
        let value = token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| ConfigError::new("auth", "the token must be printable ASCII"))
            })
            .transpose()?;
        Ok(Self { value })
    }
}

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            request.metadata_mut().insert(AUTH_HEADER, v.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_file_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "s3cret\n").unwrap();
        let cfg = AuthConfig {
            token_file: Some(path.clone()),
            token_env: None,
        };
        assert_eq!(load_token(&cfg).unwrap().as_deref(), Some("s3cret"));
        // Only the first line counts, trimmed, as documented.
        std::fs::write(&path, "  s3cret \r\nnot part of it\n").unwrap();
        assert_eq!(load_token(&cfg).unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&path, "\ns3cret\n").unwrap();
        let e = load_token(&cfg).unwrap_err();
        assert!(e.to_string().contains("the token is empty"), "{e}");
        std::fs::write(&path, "  \n").unwrap();
        let e = load_token(&cfg).unwrap_err();
        assert!(e.to_string().contains("auth.token_file"), "{e}");
        let cfg = AuthConfig {
            token_file: None,
            token_env: Some("STAGEWISE_PS_TEST_SURELY_UNSET_VAR".into()),
        };
        assert!(load_token(&cfg)
            .unwrap_err()
            .to_string()
            .contains("auth.token_env"));
        assert_eq!(load_token(&AuthConfig::default()).unwrap(), None);
    }
}

//! The error every handler returns, shaped like Proxmox's answers.

use std::collections::BTreeMap;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: None,
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    /// 400 "Parameter verification failed." with per-parameter errors.
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        Self {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(errors),
        }
    }
    pub fn param(name: &str, msg: impl Into<String>) -> Self {
        Self::params(BTreeMap::from([(name.to_string(), msg.into())]))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(format!("{e:#}"))
    }
}

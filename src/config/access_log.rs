//! The `access_log` section: where the access log goes and in which format.
//!
//! ```yaml
//! access_log:
//!   path: /var/log/rgate/access.log   # or "stderr"
//!   format: combined                  # or "json"; combined when absent
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::access_log::{AccessLogSettings, LogFormat, LogTarget};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    path: String,
    format: Option<String>,
}

/// A field and why it is refused.
type FieldError = (&'static str, String);

pub(super) fn validate(raw: RawAccessLog) -> Result<AccessLogSettings, FieldError> {
    let target = match raw.path.as_str() {
        "" => return Err(("access_log.path", "must not be empty".into())),
        "stderr" => LogTarget::Stderr,
        path => LogTarget::File(PathBuf::from(path)),
    };
    let format = match raw.format.as_deref() {
        None | Some("combined") => LogFormat::Combined,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err((
                "access_log.format",
                format!("{other:?} is not one of combined, json"),
            ))
        }
    };
    Ok(AccessLogSettings { target, format })
}

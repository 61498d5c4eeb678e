//! Turns a use-case result into the ack and, on failure, the `error` event
//! (PROTOCOL.md §2). The one place socket failures are logged.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};

use crate::domain::ValidationError;
use crate::protocol::{Ack, ErrorBody, ErrorEvent, ev};
use crate::service::{ServiceError, ServiceResult};

/// Longest serde message passed on to a client, so a bad field's value is
/// never echoed back at length.
const MAX_PARSE_MESSAGE_CHARS: usize = 160;

/// Decodes an event payload; any shape mismatch is `VALIDATION`.
pub fn parse<T: DeserializeOwned>(
    payload: Result<Value, impl std::fmt::Display>,
) -> ServiceResult<T> {
    let value = payload.map_err(|_| ValidationError::new("payload", "must be a JSON object"))?;
    if !value.is_object() {
        return Err(ValidationError::new("payload", "must be a JSON object").into());
    }
    serde_json::from_value(value).map_err(|e| {
        let message: String = e
            .to_string()
            .chars()
            .take(MAX_PARSE_MESSAGE_CHARS)
            .collect();
        ValidationError::new("payload", message).into()
    })
}

/// Acks the result and, on failure, emits `error` to this socket only.
/// Returns the outcome (`ok` or the error code) for metrics.
pub fn respond<A: Adapter, T: Serialize>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
    event: &str,
    result: ServiceResult<T>,
) -> &'static str {
    let span = tracing::Span::current();
    match result {
        Ok(data) => {
            span.record("outcome", "ok");
            if let Err(e) = ack.send(&Ack::ok(data)) {
                tracing::debug!(event, error = %e, "ack not sent (socket closing)");
            }
            "ok"
        }
        Err(err) => {
            let code = err.code();
            span.record("outcome", code.as_str());
            log_failure(event, &err);
            let message = err.to_string();
            let body = ErrorBody {
                code,
                message: message.clone(),
            };
            if let Err(e) = ack.send(&Ack::<()>::err(body)) {
                tracing::debug!(event, error = %e, "ack not sent (socket closing)");
            }
            let error = ErrorEvent {
                code,
                message: &message,
                event: Some(event),
            };
            if let Err(e) = s.emit(ev::ERROR, &error) {
                tracing::debug!(event, error = %e, "error event not sent (socket closing)");
            }
            code.as_str()
        }
    }
}

fn log_failure(event: &str, err: &ServiceError) {
    if err.is_refusal() {
        tracing::debug!(event, error.code = err.code().as_str(), error = %err, "event refused");
    } else {
        tracing::error!(
            event,
            error.code = err.code().as_str(),
            error = err as &dyn std::error::Error,
            "event failed"
        );
    }
}

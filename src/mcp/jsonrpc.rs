//! The JSON-RPC errors the endpoint answers itself, before the transport
//! sees a message: a body that is not JSON (`-32700 Parse error`) or not a
//! JSON-RPC 2.0 message (`-32600 Invalid Request`). rmcp would answer
//! those with a plain-text 415; an MCP client expects a JSON-RPC error
//! object (JSON-RPC 2.0, section 5.1), with HTTP 400 as the Streamable HTTP
//! transport asks for a message the server cannot accept.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::McpBody;

/// `-32700`: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: JSON, but not a JSON-RPC 2.0 message.
pub const INVALID_REQUEST: i64 = -32600;

/// The error answer for `body`, or `None` when it is a JSON-RPC message
/// (one object, or a batch of them) for the transport to handle.
pub fn refuse(body: &[u8]) -> Option<Response<McpBody>> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return Some(answer(PARSE_ERROR, &format!("Parse error: the body is not JSON: {error}")))
        }
    };
    let messages = match &value {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::Array(_) => Vec::new(),
        other => vec![other],
    };
    if messages.is_empty() || !messages.iter().all(|message| is_message(message)) {
        return Some(answer(
            INVALID_REQUEST,
            "Invalid Request: send a JSON-RPC 2.0 object with \"jsonrpc\": \"2.0\" and a \"method\" \
             (or a response with \"result\" or \"error\")",
        ));
    }
    None
}

fn is_message(value: &Value) -> bool {
    let Value::Object(fields) = value else { return false };
    fields.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && (fields.get("method").is_some_and(Value::is_string)
            || fields.contains_key("result")
            || fields.contains_key("error"))
}

fn answer(code: i64, message: &str) -> Response<McpBody> {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &[u8]) -> Option<i64> {
        let response = refuse(body)?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = futures_util::FutureExt::now_or_never(response.into_body().collect())?.ok()?.to_bytes();
        serde_json::from_slice::<Value>(&bytes).ok()?["error"]["code"].as_i64()
    }

    #[test]
    fn malformed_messages_get_json_rpc_errors() {
        assert_eq!(code(b"{not json"), Some(PARSE_ERROR));
        assert_eq!(code(b""), Some(PARSE_ERROR));
        assert_eq!(code(b"42"), Some(INVALID_REQUEST));
        assert_eq!(code(b"[]"), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"1.0","method":"x","id":1}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"[{"jsonrpc":"2.0","method":"ping","id":1}, 7]"#), Some(INVALID_REQUEST));
    }

    #[test]
    fn messages_pass() {
        assert!(refuse(br#"{"jsonrpc":"2.0","method":"ping","id":1}"#).is_none());
        assert!(refuse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
        assert!(refuse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).is_none());
    }
}

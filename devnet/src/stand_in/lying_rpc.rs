//! A JSON-RPC endpoint that lies (audit M-7's test double of a compromised provider): it
//! forwards every call to a real node and returns the node's answer, except that the amount of
//! every `RequestValueTransfer` log in an `eth_getLogs` result is raised by one.

use std::net::SocketAddr;

use alloy::sol_types::SolEvent;
use axum::extract::State;
use axum::routing::post;
use multibridge_contracts::bindings::Bridge;
use serde_json::Value;

use crate::error::DevnetError;

/// A running lying endpoint; stops when dropped.
#[derive(Debug)]
pub struct LyingRpc {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LyingRpc {
    /// Serve on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: String) -> Result<Self, DevnetError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(DevnetError::Ports)?;
        let addr = listener.local_addr().map_err(DevnetError::Ports)?;
        let app = axum::Router::new()
            .route("/", post(forward))
            .with_state((reqwest::Client::new(), upstream));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LyingRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State((client, upstream)): State<(reqwest::Client, String)>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = client
        .post(&upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let mut response: Value = match answer {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    match (&request, &mut response) {
        (Value::Array(calls), Value::Array(answers)) => {
            for call in calls {
                if let Some(answer) = answers.iter_mut().find(|a| a["id"] == call["id"]) {
                    rewrite(call, answer);
                }
            }
        }
        (call, answer) => rewrite(call, answer),
    }
    axum::Json(response).into_response()
}

/// Raise the amount of every request log in an `eth_getLogs` answer by one.
fn rewrite(call: &Value, answer: &mut Value) {
    if call["method"] != "eth_getLogs" {
        return;
    }
    let topic = format!("{:#x}", Bridge::RequestValueTransfer::SIGNATURE_HASH);
    let Some(logs) = answer["result"].as_array_mut() else {
        return;
    };
    for log in logs {
        if log["topics"][0].as_str() != Some(topic.as_str()) {
            continue;
        }
        let Some(data) = log["data"].as_str() else {
            continue;
        };
        let Ok(mut bytes) = alloy::hex::decode(data) else {
            continue;
        };
        // Data words: kind, token, amount, fee, extraData offset, ...: the amount's last byte.
        if let Some(byte) = bytes.get_mut(95) {
            *byte = byte.wrapping_add(1);
        }
        log["data"] = Value::String(format!("0x{}", alloy::hex::encode(bytes)));
    }
}

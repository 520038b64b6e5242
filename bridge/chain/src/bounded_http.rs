//! The HTTP transport of every RPC endpoint: alloy's reqwest transport, except that an answer is
//! read only up to a bound (audit A3-L5: one hostile or broken endpoint answering `eth_getLogs`
//! with gigabytes must not take the process, and with it every pair of a hub). An answer over
//! the bound is an error of that endpoint — retryable, so the call fails over to the next one.

use std::task;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// The default bound of one answer: far above a full `eth_getLogs` range (the indexer aims at
/// a few thousand logs per call), far below what would hurt the process.
pub const DEFAULT_MAX_ANSWER_MIB: u64 = 32;

/// The most an answer's buffer is sized to before its bytes arrive (beyond, it grows with them):
/// a hostile endpoint announcing the whole bound on every answer must not reserve it up front.
const PRESIZED_AT_MOST: usize = 4 * 1024 * 1024;

/// A JSON-RPC-over-HTTP transport reading at most `max_bytes` of an answer.
#[derive(Debug, Clone)]
pub struct BoundedHttp {
    client: reqwest::Client,
    url: reqwest::Url,
    max_bytes: usize,
}

impl BoundedHttp {
    /// A transport to `url` through `client`, answers bounded by `max_bytes`.
    pub fn new(client: reqwest::Client, url: reqwest::Url, max_bytes: usize) -> Self {
        Self {
            client,
            url,
            max_bytes,
        }
    }

    async fn send(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let mut answer = self
            .client
            .post(self.url)
            .json(&request)
            .send()
            .await
            .map_err(TransportErrorKind::custom)?;
        let status = answer.status();
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Sized once from the announced length where the node sends one (anvil, geth, reth
        // do): grown chunk by chunk, a 1 MB answer sat in a buffer of up to twice that while it
        // was parsed. A length over the bound is not trusted for the allocation (and a length
        // the body then does not fill costs address space, not memory: pages never written are
        // not resident).
        let announced = answer
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= self.max_bytes)
            .unwrap_or(0)
            .min(PRESIZED_AT_MOST);
        let mut body = Vec::with_capacity(announced);
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len().saturating_add(chunk.len()) > self.max_bytes {
                        return Err(TransportErrorKind::custom_str(&format!(
                            "the endpoint's answer is over {} bytes (chains.<chain>.max_answer_mib): not read",
                            self.max_bytes
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if !status.is_success() => {
                    return Err(TransportErrorKind::http_error(
                        status.as_u16(),
                        format!("<failed to read the answer: {e}>"),
                    ));
                }
                Err(e) => return Err(TransportErrorKind::custom(e)),
            }
        }
        if !status.is_success() {
            // A JSON-RPC error in a non-2xx answer is that error (as alloy's transport reads
            // it: anvil answers some errors with HTTP 500, providers rate limits with 429).
            if let Ok(response) = serde_json::from_slice::<ResponsePacket>(&body)
                && response.is_error()
            {
                return Ok(response);
            }
            let retry_after = answer_retry_after(&retry_after);
            return Err(TransportErrorKind::http_error_with_retry_after(
                status.as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
                retry_after,
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&body)))
    }
}

/// A `Retry-After` in seconds.
fn answer_retry_after(value: &Option<String>) -> Option<std::time::Duration> {
    value
        .as_deref()
        .and_then(|v| v.trim().parse().ok())
        .map(std::time::Duration::from_secs)
}

impl tower::Service<RequestPacket> for BoundedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::providers::{Provider, ProviderBuilder};

    /// An endpoint that answers every call with `size` bytes of a JSON string.
    async fn endpoint(size: usize) -> (reqwest::Url, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: String| async move {
                let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].clone();
                let filler = "0".repeat(size);
                axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": format!("0x{filler}1")}))
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/").parse().unwrap(), task)
    }

    #[tokio::test]
    async fn an_answer_over_the_bound_is_an_error_not_memory() {
        for (size, fits) in [(1_000, true), (3 * 1024 * 1024, false)] {
            let (url, server) = endpoint(size).await;
            let transport = BoundedHttp::new(reqwest::Client::new(), url, 1024 * 1024);
            let provider = ProviderBuilder::new().connect_client(
                alloy::rpc::client::ClientBuilder::default().transport(transport, true),
            );
            let answer = provider.get_block_number().await;
            assert_eq!(answer.is_ok(), fits, "{size} bytes: {answer:?}");
            if !fits {
                assert!(
                    answer
                        .unwrap_err()
                        .to_string()
                        .contains("over 1048576 bytes")
                );
            }
            server.abort();
        }
    }
}

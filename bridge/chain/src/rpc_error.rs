//! The one place RPC errors are classified: what is worth retrying (here or on another
//! endpoint), what is a rate limit to back off from, and what no retry can fix. Sending a
//! transaction has its own outcomes on top (nonce too low, already known, underpriced, ...).

use alloy::transports::{RpcError, TransportError, TransportErrorKind};

/// How the caller should react to a failed RPC call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A transient failure of the endpoint or the network: retry, on another endpoint first.
    Retryable,
    /// The endpoint asked us to slow down: back off, prefer another endpoint.
    RateLimited,
    /// The request itself is wrong (reverts, invalid params): retrying cannot help.
    Fatal,
}

impl ErrorClass {
    /// The metric outcome of a failed attempt of this class.
    pub fn outcome(self) -> multibridge_monitoring::RpcOutcome {
        use multibridge_monitoring::RpcOutcome;
        match self {
            Self::Retryable => RpcOutcome::Retryable,
            Self::RateLimited => RpcOutcome::RateLimited,
            Self::Fatal => RpcOutcome::Fatal,
        }
    }

    /// Stable label (the metric outcome's).
    pub fn label(self) -> &'static str {
        self.outcome().as_str()
    }
}

/// Classify any JSON-RPC failure.
pub fn classify(error: &TransportError) -> ErrorClass {
    match error {
        RpcError::ErrorResp(payload) => classify_response(payload.code, &payload.message),
        RpcError::Transport(kind) => classify_transport(kind),
        // The endpoint answered nothing or garbage: another endpoint may do better.
        RpcError::NullResp | RpcError::DeserError { .. } => ErrorClass::Retryable,
        // Our own request could not be built: a bug or bad input, not the endpoint.
        _ => ErrorClass::Fatal,
    }
}

/// A contract call the node answered with no data: the address has no code at the block asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoContractCode(pub String);

/// [`classify`] for a call at a given past block: a contract with no code there is the node's
/// answer for that block (a block before the bridge's deployment, as a scan from the deployment
/// asks for the nonce before it), which asking again or another node does not change. It was
/// retried six times with back-off — about 2 s and six warnings — before the caller's fallback
/// ran. At the head the same answer stays retryable: a node behind a deployment may catch up.
pub fn classify_at_block(error: &TransportError) -> ErrorClass {
    match error {
        RpcError::Transport(TransportErrorKind::Custom(e)) if e.is::<NoContractCode>() => {
            ErrorClass::Fatal
        }
        other => classify(other),
    }
}

fn classify_transport(kind: &TransportErrorKind) -> ErrorClass {
    match kind {
        TransportErrorKind::HttpError(http)
        | TransportErrorKind::HttpErrorWithRetryAfter { error: http, .. } => {
            match http.status {
                429 => ErrorClass::RateLimited,
                // Any other HTTP status is a problem of this endpoint (down, misconfigured, wrong
                // path or credentials): another endpoint can serve the same request.
                _ => ErrorClass::Retryable,
            }
        }
        // Connection refused, reset, timed out, backend gone, ...
        _ => ErrorClass::Retryable,
    }
}

/// Whether a node's message says the transaction is too large to be accepted as it is, ever:
/// above the block gas limit, above the node's gas allowance, above its size limit, or its fee
/// above the node's cap (geth, reth, erigon, nethermind, anvil wordings). No retry of the same
/// transaction helps; a smaller one may pass.
pub fn is_too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "exceeds block gas limit",
        "gas limit reached",
        "gas required exceeds",
        "intrinsic gas too low",
        "oversized data",
        "transaction size",
        "tx size",
        "out of gas",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Whether a node refuses the transaction as priced now (its fee above the node's cap, the
/// pending block full): no retry of the same bytes helps, but the same request may pass later —
/// a refusal, never "maybe sent", and never a reason to set the request aside.
pub fn is_refused_for_now(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "exceeds the configured cap",
        "max fee per gas higher than",
        "gas limit reached",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Whether a node's message says the sender cannot pay for the transaction's gas.
pub fn is_insufficient_funds(message: &str) -> bool {
    message.to_ascii_lowercase().contains("insufficient funds")
}

/// Whether a node's message says it has not reached (or no longer has) the block the request
/// names (anvil, geth, erigon, nethermind, reth, besu wordings).
pub fn is_behind_the_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "blockoutofrange",
        "block out of range",
        "block height is",
        "header not found",
        "unknown block",
        "block not found",
        "beyond current head",
        "greater than the current",
        "greater than the latest",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Whether a node's message says it no longer holds the state of the (older) block the request
/// names: a full node prunes state older than a few hundred blocks, and anvil keeps a bounded
/// number of blocks' states (`BlockOutOfRangeError: block height is 4704 but requested was
/// 882`). The same node never answers it again, so it is not worth a retry; a node *behind* the
/// block (the requested one above its height) is [`is_behind_the_block`] and is.
pub fn is_pruned_state(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    if m.contains("historical state") && (m.contains("not available") || m.contains("unavailable"))
    {
        return true;
    }
    // anvil: "block height is H but requested was R".
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &m[m.find(marker)?.checked_add(marker.len())?..];
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    matches!(
        (number_after("block height is"), number_after("requested was")),
        (Some(height), Some(requested)) if requested < height
    )
}

/// Classify a JSON-RPC error response by code and message (clients differ in both).
pub fn classify_response(code: i64, message: &str) -> ErrorClass {
    // The same call fails the same way until the transaction shrinks or the signer is funded.
    if is_too_large(message) || is_refused_for_now(message) || is_insufficient_funds(message) {
        return ErrorClass::Fatal;
    }
    let m = message.to_ascii_lowercase();
    if code == 429
        || code == -32005
        || m.contains("rate limit")
        || m.contains("too many requests")
        || m.contains("exceeded")
            && (m.contains("quota") || m.contains("capacity") || m.contains("limit"))
    {
        return ErrorClass::RateLimited;
    }
    if code == 3 || m.contains("execution reverted") || m.contains("revert") {
        return ErrorClass::Fatal;
    }
    // State pruned at the block asked for: this node will not answer it again. The relay's
    // reads of old blocks each have their fallback (a log range left uncounted, the first nonce
    // read from the first request's log).
    if is_pruned_state(message) {
        return ErrorClass::Fatal;
    }
    // A node behind the block asked for answers "invalid params" on some clients (anvil's
    // `BlockOutOfRangeError`): the request is right, this endpoint lags — another one (or this
    // one a block later) serves it.
    if is_behind_the_block(message) {
        return ErrorClass::Retryable;
    }
    if code == -32602
        || code == -32601
        || m.contains("invalid argument")
        || m.contains("method not found")
    {
        return ErrorClass::Fatal;
    }
    // "header not found", "missing trie node", "unknown block", timeouts, a syncing node:
    // the endpoint is behind or busy; everything not recognised is treated the same way,
    // bounded by the caller's attempt limit.
    ErrorClass::Retryable
}

/// What a failed `eth_sendRawTransaction` means for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRejection {
    /// The nonce is already used: one of our earlier transactions (or a replacement) was mined.
    /// Check our earlier hashes before sending anything new.
    NonceTooLow,
    /// The node already has exactly this transaction: it counts as sent.
    AlreadyKnown,
    /// The fee is below what the node accepts: raise it.
    Underpriced,
    /// The node holds another transaction of the key at this nonce and the fee is below its
    /// replacement bump ("replacement transaction underpriced"): the nonce is taken, not a hole.
    ReplacementUnderpriced,
    /// The signer cannot pay for gas: an operator must fund it.
    InsufficientFunds,
    /// The node refused for another reason.
    Other(ErrorClass),
}

/// Classify a failed `eth_sendRawTransaction`.
pub fn classify_send(error: &TransportError) -> SendRejection {
    let RpcError::ErrorResp(payload) = error else {
        return SendRejection::Other(classify(error));
    };
    let m = payload.message.to_ascii_lowercase();
    if m.contains("nonce too low") || m.contains("nonce has already been used") {
        SendRejection::NonceTooLow
    } else if m.contains("already known")
        || m.contains("known transaction")
        || m.contains("already imported")
    {
        SendRejection::AlreadyKnown
    } else if m.contains("replacement") && m.contains("underpriced") {
        SendRejection::ReplacementUnderpriced
    } else if m.contains("underpriced")
        || m.contains("fee cap less than block base fee")
        || m.contains("max fee per gas less than block base fee")
    {
        SendRejection::Underpriced
    } else if is_insufficient_funds(&m) {
        SendRejection::InsufficientFunds
    } else {
        SendRejection::Other(classify_response(payload.code, &payload.message))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use alloy::rpc::json_rpc::ErrorPayload;
    use alloy::transports::HttpError;

    use super::*;

    fn resp(code: i64, message: &'static str) -> TransportError {
        RpcError::ErrorResp(ErrorPayload {
            code,
            message: Cow::Borrowed(message),
            data: None,
        })
    }

    fn http(status: u16) -> TransportError {
        RpcError::Transport(TransportErrorKind::HttpError(HttpError {
            status,
            body: String::new(),
        }))
    }

    /// Audit H-1: these used to be "retryable" (and a broadcast refused with them was tracked
    /// as maybe sent, its nonce consumed).
    #[test]
    fn a_transaction_too_large_for_the_node_is_refused_not_retried() {
        for message in [
            "exceeds block gas limit",
            "gas required exceeds allowance (3000000)",
            "oversized data",
            "intrinsic gas too low",
            "Out of gas: gas required exceeds allowance: 3000000",
        ] {
            assert!(is_too_large(message), "{message}");
            assert_eq!(
                classify(&resp(-32000, message)),
                ErrorClass::Fatal,
                "{message}"
            );
            assert_eq!(
                classify_send(&resp(-32000, message)),
                SendRejection::Other(ErrorClass::Fatal),
                "{message}"
            );
        }
        // Refused as priced now: a refusal (never "maybe sent"), but not a size problem.
        let fee_cap = "tx fee (2.50 ether) exceeds the configured cap (1.00 ether)";
        assert!(!is_too_large(fee_cap) && is_refused_for_now(fee_cap));
        assert_eq!(classify(&resp(-32000, fee_cap)), ErrorClass::Fatal);
        assert!(!is_too_large("header not found"));
        assert!(!is_too_large("nonce too low"));
    }

    #[test]
    fn a_past_block_without_the_contract_is_an_answer_not_a_failure() {
        let no_code = alloy::contract::Error::ZeroData(
            "requestNonce".into(),
            alloy::sol_types::Error::Overrun.into(),
        );
        let error = crate::contract_to_transport(no_code);
        assert_eq!(classify_at_block(&error), ErrorClass::Fatal);
        // At the head a node may be behind the deployment: another one, or later, may answer.
        assert_eq!(classify(&error), ErrorClass::Retryable);
        assert!(error.to_string().contains("returned no data"), "{error}");
        // Data that does not decode may be one endpoint's garbage: another may answer right.
        let garbage = alloy::contract::Error::AbiError(alloy::sol_types::Error::Overrun.into());
        assert_eq!(
            classify_at_block(&crate::contract_to_transport(garbage)),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn transport_failures_are_retryable_and_429_is_a_rate_limit() {
        assert_eq!(classify(&http(429)), ErrorClass::RateLimited);
        assert_eq!(
            classify(&RpcError::Transport(
                TransportErrorKind::HttpErrorWithRetryAfter {
                    error: HttpError {
                        status: 429,
                        body: String::new()
                    },
                    retry_after: Duration::from_secs(1),
                }
            )),
            ErrorClass::RateLimited
        );
        for status in [500, 502, 503, 401, 404] {
            assert_eq!(
                classify(&http(status)),
                ErrorClass::Retryable,
                "HTTP {status}"
            );
        }
        assert_eq!(
            classify(&TransportErrorKind::backend_gone()),
            ErrorClass::Retryable
        );
        assert_eq!(classify(&RpcError::NullResp), ErrorClass::Retryable);
    }

    #[test]
    fn responses_are_classified_by_code_and_message() {
        assert_eq!(
            classify(&resp(-32005, "limit exceeded")),
            ErrorClass::RateLimited
        );
        assert_eq!(
            classify(&resp(-32000, "Too Many Requests")),
            ErrorClass::RateLimited
        );
        assert_eq!(
            classify(&resp(3, "execution reverted: custom error 0x1234")),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&resp(-32602, "invalid argument 0")),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&resp(-32601, "the method x does not exist")),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&resp(-32000, "header not found")),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify(&resp(-32000, "missing trie node abc")),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn a_node_behind_the_block_asked_for_is_retryable_whatever_its_code() {
        for (code, message) in [
            (
                -32602,
                "BlockOutOfRangeError: block height is 13 but requested was 15",
            ),
            (-32000, "header not found"),
            (-32000, "unknown block"),
            (-32001, "Block not found"),
            (-32000, "block range extends beyond current head block"),
        ] {
            assert!(is_behind_the_block(message), "{message}");
            assert_eq!(
                classify(&resp(code, message)),
                ErrorClass::Retryable,
                "{code} {message}"
            );
        }
        // Other invalid params stay fatal.
        assert_eq!(
            classify(&resp(
                -32602,
                "invalid argument 0: hex string without 0x prefix"
            )),
            ErrorClass::Fatal
        );
    }

    #[test]
    fn send_rejections_say_what_to_do() {
        assert_eq!(
            classify_send(&resp(-32000, "nonce too low")),
            SendRejection::NonceTooLow
        );
        assert_eq!(
            classify_send(&resp(-32003, "Nonce too low: next nonce 5, tx nonce 4")),
            SendRejection::NonceTooLow
        );
        assert_eq!(
            classify_send(&resp(-32000, "already known")),
            SendRejection::AlreadyKnown
        );
        assert_eq!(
            classify_send(&resp(-32000, "replacement transaction underpriced")),
            SendRejection::ReplacementUnderpriced
        );
        assert_eq!(
            classify_send(&resp(-32000, "transaction underpriced")),
            SendRejection::Underpriced
        );
        assert_eq!(
            classify_send(&resp(
                -32000,
                "max fee per gas less than block base fee: address 0x.."
            )),
            SendRejection::Underpriced
        );
        assert_eq!(
            classify_send(&resp(-32003, "Insufficient funds for gas * price + value")),
            SendRejection::InsufficientFunds
        );
        assert_eq!(
            classify_send(&http(503)),
            SendRejection::Other(ErrorClass::Retryable)
        );
        assert_eq!(
            classify_send(&resp(3, "execution reverted")),
            SendRejection::Other(ErrorClass::Fatal)
        );
    }

    #[test]
    fn state_pruned_at_an_old_block_is_not_retried_but_a_block_ahead_is() {
        for message in [
            "BlockOutOfRangeError: block height is 4704 but requested was 882",
            "required historical state unavailable (reexec=128)",
            "historical state 0xabc is not available",
        ] {
            assert!(is_pruned_state(message), "{message}");
            assert_eq!(
                classify_response(-32602, message),
                ErrorClass::Fatal,
                "{message}"
            );
        }
        for (code, message) in [
            (
                -32602,
                "BlockOutOfRangeError: block height is 12 but requested was 13",
            ),
            (-32000, "header not found"),
            (-32000, "missing trie node abc (path )"),
        ] {
            assert!(!is_pruned_state(message), "{message}");
            assert_eq!(
                classify_response(code, message),
                ErrorClass::Retryable,
                "{message}"
            );
        }
    }
}

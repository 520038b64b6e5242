//! Keeping credentials out of everything the relay writes (audit M-1).
//!
//! RPC providers put API keys in URLs — as userinfo (`https://user:key@host`), in the path
//! (`https://host/v2/<key>`) or in the query (`?apikey=<key>`) — and HTTP client errors quote
//! the URL they failed on. Every text that leaves the process (log lines, error messages,
//! `/readyz`, `/status`, CLI output) goes through [`redact_urls`], which keeps a URL's scheme,
//! host and port (enough to tell endpoints apart) and drops the rest.

use std::borrow::Cow;

/// `text` with every URL in it cut to `scheme://host[:port]`, followed by `/…` if anything
/// (user, password, path, query, fragment) was dropped.
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters right before "://".
        let scheme_start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ',' | '`' | ']')
            })
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_one(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One URL, redacted.
fn redact_one(url: &str) -> String {
    let Some((scheme, after)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#'; credentials end at its last '@'.
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    let (had_user, host) = match authority.rfind('@') {
        Some(i) => (true, &authority[i + 1..]),
        None => (false, authority),
    };
    let tail = &after[authority_end..];
    let dropped = had_user || !(tail.is_empty() || tail == "/");
    if dropped {
        format!("{scheme}://{host}/…")
    } else {
        format!("{scheme}://{host}")
    }
}

/// A writer that redacts URLs in what it writes (the log sink: one formatted event per write).
pub struct RedactingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact_urls(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_userinfo_path_and_query_are_dropped() {
        let text = "error sending request for url (https://alice:s3cret@rpc.example.com:8545/v2/KEY123?apikey=QKEY#frag), retrying";
        let redacted = redact_urls(text);
        for secret in ["alice", "s3cret", "KEY123", "QKEY", "frag", "/v2"] {
            assert!(!redacted.contains(secret), "{secret} left in {redacted}");
        }
        assert_eq!(
            redacted,
            "error sending request for url (https://rpc.example.com:8545/…), retrying"
        );
    }

    #[test]
    fn plain_urls_and_text_without_urls_are_kept() {
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(
            redact_urls("#0 127.0.0.1:8545 and http://127.0.0.1:8545/ and ws://node:8546"),
            "#0 127.0.0.1:8545 and http://127.0.0.1:8545 and ws://node:8546"
        );
        assert_eq!(
            redact_urls("two: http://a/x?k=1 \"https://b/y\""),
            "two: http://a/… \"https://b/…\""
        );
    }
}

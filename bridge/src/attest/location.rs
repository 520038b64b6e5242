//! Which published locations a relay (or a user's `multibridge execute`) fetches (audit A3-L4):
//! a location comes from the service registry, where an operator or any co-manager of its lane
//! service writes it, so it is fetched only when it names a place meant for this:
//!
//! - `https://…`; `http://…` only on devnet chain ids;
//! - a host that resolves to public addresses only: loopback, private, link-local, carrier-grade
//!   NAT, unique-local, multicast and unspecified addresses are refused (on devnet chain ids,
//!   where everything runs on loopback, allowed), checked again at every connection by the HTTP
//!   client's resolver so a name cannot change its answer between the check and the fetch;
//! - no redirects followed;
//! - `s3://…` with an endpoint checked like an HTTP location (without one: AWS's own);
//! - `file://…` only when the relay's own config names it (`voting.peer_stores`).
//!
//! A refused location is a [`Refused::Refused`] naming why (counted as `refused`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a location is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It is not a place meant for this: why.
    #[error("refused location: {0}")]
    Refused(String),
    /// Its host does not resolve (now): why.
    #[error("unreachable: {0}")]
    Unresolved(String),
}

/// The most URLs one published location may list (an operator's replicas).
pub const MAX_LOCATION_URLS: usize = 8;

/// What a relay accepts as a peer's location.
#[derive(Debug, Clone, Default)]

pub struct LocationPolicy {
    /// Devnet chain ids: plain HTTP and loopback addresses are fine.
    pub devnet: bool,
    /// `file://` locations the relay's config names.
    pub peer_stores: Vec<String>,
}

/// Whether connecting to `ip` could reach something that is not the public Internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A resolver that answers only public addresses: the HTTP client of peers connects through it,
/// so a name is checked at every connection, not only before.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (internal addresses are refused)"
                )
                .into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

impl LocationPolicy {
    /// The policy `config` sets: devnet when both chains are devnet chains, its `peer_stores`.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            devnet: multibridge_config::is_devnet_chain(config.chains.main.chain_id)
                && multibridge_config::is_devnet_chain(config.chains.service.chain_id),
            peer_stores: config.voting.peer_stores.clone(),
        }
    }

    /// The HTTP client peers are fetched with: no redirects, and (outside devnets) public
    /// addresses only.
    pub fn http_client(&self, timeout: std::time::Duration) -> reqwest::Client {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        let builder = if self.devnet {
            builder
        } else {
            builder.dns_resolver(Arc::new(PublicOnly))
        };
        builder.build().unwrap_or_default()
    }

    /// Whether `location` may be fetched; why not. A location may list several HTTP(S) URLs
    /// separated by spaces (every replica of the operator, each serving its signatures): each
    /// must pass.
    pub async fn check(&self, location: &str) -> Result<(), Refused> {
        let refused = |why: String| Err(Refused::Refused(why));
        let urls: Vec<&str> = location.split_whitespace().collect();
        if urls.len() > 1 {
            if urls.len() > MAX_LOCATION_URLS {
                return refused(format!(
                    "more than {MAX_LOCATION_URLS} URLs in one location"
                ));
            }
            for url in urls {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return refused("a list of locations holds HTTP(S) URLs only".to_owned());
                }
                self.check_url(url).await?;
            }
            return Ok(());
        }
        if location.starts_with("file://") {
            if self.peer_stores.iter().any(|s| s == location) {
                return Ok(());
            }
            return refused("a file:// location not named in voting.peer_stores".to_owned());
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            let endpoint = rest
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .split('&')
                .find_map(|p| p.strip_prefix("endpoint="));
            return match endpoint {
                Some(endpoint) => self.check_url(endpoint).await,
                None => Ok(()),
            };
        }
        self.check_url(location).await
    }

    async fn check_url(&self, location: &str) -> Result<(), Refused> {
        let refused = |why: String| Err(Refused::Refused(why));
        let Ok(url) = location.parse::<reqwest::Url>() else {
            return refused("not a URL".to_owned());
        };
        match url.scheme() {
            "https" => {}
            "http" if self.devnet => {}
            "http" => return refused("plain http outside a devnet (https only)".to_owned()),
            other => return refused(format!("scheme {other:?}")),
        }
        if self.devnet {
            return Ok(());
        }
        let Some(host) = url.host_str() else {
            return refused("no host".to_owned());
        };
        let host = host.trim_matches(['[', ']']);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if is_internal(ip) {
                refused(format!("the internal address {ip}"))
            } else {
                Ok(())
            };
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Refused::Unresolved(format!("cannot resolve {host}: {e}")))?
            .collect();
        match found.iter().find(|a| is_internal(a.ip())) {
            Some(internal) => refused(format!(
                "{host} resolves to the internal address {}",
                internal.ip()
            )),
            None if found.is_empty() => {
                Err(Refused::Unresolved(format!("{host} resolves to nothing")))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LocationPolicy {
        LocationPolicy {
            devnet: false,
            peer_stores: vec!["file:///srv/shared/op2".to_owned()],
        }
    }

    #[test]
    fn internal_addresses_are_named() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn published_locations_are_fetched_only_when_meant_for_it() {
        let p = policy();
        for bad in [
            "http://relay.example.org",
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1:9464",
            "https://[::1]:9464",
            "https://localhost:9464",
            "file:///etc",
            "file:///srv/shared/op3",
            "s3://bucket/p?region=x&endpoint=http://10.0.0.5:9000",
            "gopher://relay.example.org",
        ] {
            assert!(
                matches!(p.check(bad).await, Err(Refused::Refused(_))),
                "{bad}"
            );
        }
        for good in [
            "https://8.8.8.8:9464",
            "file:///srv/shared/op2",
            "s3://bucket/prefix?region=eu-west-1",
        ] {
            assert!(p.check(good).await.is_ok(), "{good}");
        }
        // On devnet chain ids everything runs on loopback over plain HTTP.
        let devnet = LocationPolicy {
            devnet: true,
            ..policy()
        };
        assert!(devnet.check("http://127.0.0.1:9464").await.is_ok());
        assert!(devnet.check("file:///etc").await.is_err());
    }

    #[tokio::test]
    async fn a_location_listing_every_replica_passes_only_if_each_url_does() {
        let p = policy();
        assert!(
            p.check("https://8.8.8.8:9464 https://1.1.1.1:9464")
                .await
                .is_ok()
        );
        for bad in [
            // One internal URL spoils the list.
            "https://8.8.8.8:9464 https://127.0.0.1:9464",
            // A list holds HTTP(S) URLs only.
            "https://8.8.8.8:9464 file:///srv/shared/op2",
            "https://8.8.8.8:9464 s3://bucket/prefix?region=eu-west-1",
        ] {
            assert!(
                matches!(p.check(bad).await, Err(Refused::Refused(_))),
                "{bad}"
            );
        }
        let too_many = ["https://8.8.8.8:9464"; MAX_LOCATION_URLS + 1].join(" ");
        assert!(matches!(p.check(&too_many).await, Err(Refused::Refused(_))));
    }

    #[tokio::test]
    async fn the_peer_client_follows_no_redirect_and_resolves_only_public_names() {
        let found = PublicOnly.resolve("localhost".parse().unwrap()).await;
        assert!(found.is_err(), "localhost resolves to loopback only");
        // A location that redirects (to the cloud metadata address, say) is not followed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/attestations/main-to-service",
            axum::routing::get(|| async {
                axum::response::Redirect::temporary("http://169.254.169.254/latest/meta-data")
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let devnet = LocationPolicy {
            devnet: true,
            ..policy()
        };
        let answer = devnet
            .http_client(std::time::Duration::from_secs(5))
            .get(format!("http://{addr}/attestations/main-to-service"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            307,
            "the redirect is answered, not followed"
        );
        server.abort();
    }
}

//! The checks before a relay runs (and all of `multibridge config check`): the key, each chain's
//! id on every endpoint, code at both bridges, that they name each other, that the operator is
//! registered, the threshold and the signer's balance. Sends nothing.

use std::sync::Arc;

use alloy::primitives::U256;
use alloy::providers::Provider;
use multibridge_contracts::ChainRole;
use multibridge_monitoring::Metrics;

use crate::chain::signer::open::load_signer;
use crate::chain::{ChainPair, RetryPolicy};
use crate::config::Config;
use crate::error::RelayError;

/// What the preflight found out about one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Which chain.
    pub role: ChainRole,
    /// Chain id (as configured and served).
    pub chain_id: u64,
    /// Endpoints that answered.
    pub endpoints_up: usize,
    /// Endpoints configured.
    pub endpoints: usize,
    /// Votes needed on this chain's bridge.
    pub threshold: U256,
    /// Registered operators of this chain's bridge.
    pub operators: usize,
    /// The signer's native balance on this chain.
    pub signer_balance: U256,
}

/// A checked relay, ready to run.
pub struct Preflight {
    /// The config.
    pub config: Config,
    /// The operator's signer.
    pub signer: crate::chain::signer::OperatorSigner,
    /// The guardian's pauser key (`[guardian]`), checked to be a pauser of both bridges.
    pub guardian: Option<crate::chain::signer::OperatorSigner>,
    /// Both chains (RPC outcomes are recorded in `metrics` from the preflight on).
    pub chains: ChainPair,
    /// What was found per chain.
    pub reports: Vec<ChainReport>,
}

/// Check `config` against the live chains. Sends nothing.
pub async fn preflight(config: Config) -> Result<Preflight, RelayError> {
    let endpoints = config
        .chains
        .main
        .rpc_urls
        .len()
        .max(config.chains.service.rpc_urls.len());
    let metrics = Arc::new(Metrics::new(&config.lanes, endpoints)?);
    let signer = load_signer(&config).await?;
    preflight_with(config, signer, metrics).await
}

/// [`preflight`] with the key already loaded, recording RPC outcomes in `metrics` (the running
/// relay's).
pub async fn preflight_with(
    config: Config,
    signer: crate::chain::signer::OperatorSigner,
    metrics: Arc<Metrics>,
) -> Result<Preflight, RelayError> {
    let operator = signer.address();
    let chains = ChainPair::connect(&config.chains, RetryPolicy::interactive(), &metrics)?;
    // First what each chain is (reachable, right id, a contract at the bridge address), then how
    // the bridges relate to each other and to this operator: the most basic problem is named.
    // Both chains are asked at once, and a step's reads at once; the errors are still named in
    // that order (a hub starts dozens of pairs together: sixteen reads one after the other were
    // most of a pair's start).
    let identities = futures::future::join_all(
        chains
            .each()
            .into_iter()
            .map(|(role, client)| chain_identity(role, client)),
    )
    .await;
    let endpoints_up = identities.into_iter().collect::<Result<Vec<_>, _>>()?;
    let relations = futures::future::join_all(chains.each().into_iter().zip(endpoints_up).map(
        |((role, client), endpoints_up)| {
            let counterpart = chains.get(role.other()).bridge();
            chain_report(&config, role, client, counterpart, operator, endpoints_up)
        },
    ))
    .await;
    let reports = relations.into_iter().collect::<Result<Vec<_>, _>>()?;
    check_attestations(&config, &chains).await?;
    let guardian = match &config.guardian {
        Some(settings) => Some(check_guardian(&config, settings, &chains).await?),
        None => None,
    };
    Ok(Preflight {
        config,
        signer,
        guardian,
        chains,
        reports,
    })
}

/// One chain's identity: it answers on some endpoint with the configured id and holds code at
/// the bridge address. The endpoints that answered.
async fn chain_identity(
    role: ChainRole,
    client: &crate::chain::ChainClient,
) -> Result<usize, RelayError> {
    let up = client.verify_chain_id().await?;
    if up == 0 {
        return Err(RelayError::Unreachable { chain: role });
    }
    let bridge = client.bridge();
    let code = client
        .call(
            "eth_getCode",
            |p| async move { p.get_code_at(bridge).await },
        )
        .await?;
    if code.is_empty() {
        return Err(RelayError::NoBridgeCode {
            chain: role,
            address: bridge,
        });
    }
    Ok(up)
}

/// How one chain's bridge relates to the other's (`counterpart`) and to `operator`: its four
/// reads at once, their problems named in order (not a pair, not registered, then the rest).
async fn chain_report(
    config: &Config,
    role: ChainRole,
    client: &crate::chain::ChainClient,
    counterpart: alloy::primitives::Address,
    operator: alloy::primitives::Address,
    endpoints_up: usize,
) -> Result<ChainReport, RelayError> {
    let views = client.views();
    let bridge = client.bridge();
    let (named, operators, threshold, signer_balance) = tokio::join!(
        views.counterpart_bridge(),
        views.operators(),
        views.threshold(),
        client.call("eth_getBalance", |p| async move {
            p.get_balance(operator).await
        }),
    );
    let named = named?;
    if named != counterpart {
        return Err(RelayError::NotAPair {
            chain: role,
            bridge,
            expected: counterpart,
            actual: named,
        });
    }
    let operators = operators?;
    if !operators.contains(&operator) {
        return Err(RelayError::NotRegistered {
            chain: role,
            operator,
            bridge,
        });
    }
    let threshold = threshold?;
    let signer_balance = signer_balance?;
    if signer_balance.is_zero() {
        return Err(RelayError::Unfunded {
            chain: role,
            operator,
        });
    }
    Ok(ChainReport {
        role,
        chain_id: client.chain_id(),
        endpoints_up,
        endpoints: config.chains.get(role).rpc_urls.len(),
        threshold,
        operators: operators.len(),
        signer_balance,
    })
}

/// For every lane in attested mode: the destination bridge computes the attestation digest this
/// relay computes (an empty batch's: the domain alone), so no signature is made for nothing.
async fn check_attestations(config: &Config, chains: &ChainPair) -> Result<(), RelayError> {
    for lane in &config.lanes {
        if config.voting.mode_of(*lane) != crate::config::VotingMode::Attestations {
            continue;
        }
        let client = chains.get(lane.destination());
        let ours = crate::lane::vote_domain(config, *lane).attestation_digest(&[]);
        let theirs = client
            .bridge_call("attestationDigest", |b| async move {
                b.attestationDigest(Vec::new()).call().await
            })
            .await;
        let detail = match theirs {
            Ok(digest) if digest == ours => continue,
            Ok(digest) => format!("signs digest {digest} where this relay computes {ours}"),
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => format!("cannot compute an attestation digest ({e})"),
        };
        return Err(RelayError::AttestationsUnsupported {
            lane: *lane,
            bridge: client.bridge(),
            detail,
        });
    }
    Ok(())
}

/// Open the guardian's pauser key and check it is `guardian.address`'s, a pauser of both
/// bridges, and funded on both chains (it must be able to pay for a pause the moment it needs
/// one).
async fn check_guardian(
    config: &Config,
    settings: &crate::config::GuardianConfig,
    chains: &ChainPair,
) -> Result<crate::chain::signer::OperatorSigner, RelayError> {
    let signer = crate::chain::signer::open::load_operator_signer(&settings.signer, config).await?;
    if signer.address() != settings.address {
        return Err(RelayError::GuardianKey {
            expected: settings.address,
            actual: signer.address(),
        });
    }
    signer
        .probe()
        .await
        .map_err(crate::chain::signer::open::KeyError::from)?;
    let guardian = signer.address();
    // Every read at once; the problems named chain by chain, a pauser's role before its funds.
    let reads =
        futures::future::join_all(chains.each().into_iter().map(|(role, client)| async move {
            let views = client.views();
            let (pauser, balance) = tokio::join!(
                views.is_pauser(guardian),
                client.call("eth_getBalance", |p| async move {
                    p.get_balance(guardian).await
                }),
            );
            (role, client.bridge(), pauser, balance)
        }))
        .await;
    for (role, bridge, pauser, balance) in reads {
        if !pauser? {
            return Err(RelayError::GuardianNotPauser {
                chain: role,
                guardian,
                bridge,
            });
        }
        if balance?.is_zero() {
            return Err(RelayError::GuardianUnfunded {
                chain: role,
                guardian,
            });
        }
    }
    Ok(signer)
}

//! `admin plan` and `admin apply`: read both bridges, check the desired state against them and
//! the chains (tokens that exist, a signer that is the owner), make the plan, and apply it call
//! by call, stopping at the first failure with what was done and what remains.

use alloy::primitives::{Address, B256, FixedBytes};
use alloy::providers::Provider;
use multibridge_contracts::{AssetKind, ChainRole, IERC165, TokenMode};

use super::plan::{Change, Desired, PlanError, asset_key, plan};
use super::send::{CallError, send_call};
use super::state::BridgeState;
use crate::chain::{ChainClient, ChainError, ChainPair, RetryPolicy};
use crate::config::Config;

/// One bridge's plan.
#[derive(Debug, Clone)]
pub struct ChainPlan {
    /// What the bridge is now.
    pub live: BridgeState,
    /// The calls, in order.
    pub changes: Vec<Change>,
    /// The owner is a contract (a multisig): the plan goes out as a Safe batch.
    pub owner_is_contract: bool,
}

/// Why nothing, or not everything, was done.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The desired state is impossible (found before anything was sent).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A token the file names has no contract.
    #[error("unknown token {token} on the {chain} chain: there is no contract at that address")]
    UnknownToken {
        /// Which chain.
        chain: ChainRole,
        /// The address.
        token: Address,
    },
    /// A pair's mode does not fit the token: an ERC-721 mode for a contract that is no ERC-721
    /// (by ERC-165), or an ERC-20 mode for one that is.
    #[error(
        "token {token} on the {chain} chain {is} an ERC-721 (ERC-165), but the pair's mode is {mode:?}: use {hint} (nothing was sent)"
    )]
    ModeDoesNotFitToken {
        /// Which chain.
        chain: ChainRole,
        /// The token.
        token: Address,
        /// `is` or `is not`.
        is: &'static str,
        /// The mode given.
        mode: TokenMode,
        /// The modes that fit.
        hint: &'static str,
    },
    /// The signer may not make these calls.
    #[error(
        "the signer {signer} is not the owner {owner} of the {chain} bridge: give the owner's key (nothing was sent)"
    )]
    NotOwner {
        /// Which chain.
        chain: ChainRole,
        /// The signer.
        signer: Address,
        /// The owner.
        owner: Address,
    },
    /// The owner is a contract.
    #[error(
        "the owner {owner} of the {chain} bridge is a contract (a multisig?): write the batch with `admin plan --safe-out DIR` and have its owners import it (nothing was sent)"
    )]
    OwnerIsContract {
        /// Which chain.
        chain: ChainRole,
        /// The owner.
        owner: Address,
    },
    /// A call failed: the ones before it are done, the rest were not sent.
    #[error("stopped at {failed}: {cause}\n  done: {}\n  not sent: {}", if done.is_empty() { "nothing".to_owned() } else { done.join("; ") }, if remaining.is_empty() { "nothing".to_owned() } else { remaining.join("; ") })]
    Stopped {
        /// The failed call.
        failed: String,
        /// Why.
        cause: CallError,
        /// Calls done.
        done: Vec<String>,
        /// Calls not sent.
        remaining: Vec<String>,
    },
}

/// Whether `token` says it is an ERC-721 (ERC-165 `supportsInterface(0x80ac58cd)`); a contract
/// without ERC-165 (most ERC-20s) reverts or answers garbage: not one.
async fn is_erc721(chain: &ChainClient, token: Address) -> Result<bool, ChainError> {
    chain
        .call("supportsInterface", |p| async move {
            match IERC165::new(token, p)
                .supportsInterface(FixedBytes([0x80, 0xac, 0x58, 0xcd]))
                .call()
                .await
            {
                Ok(yes) => Ok(yes),
                // The node answered with an error (a revert, with or without data) or the
                // answer did not decode: the contract does not speak ERC-165.
                Err(
                    alloy::contract::Error::TransportError(alloy::transports::RpcError::ErrorResp(
                        _,
                    ))
                    | alloy::contract::Error::AbiError(_)
                    | alloy::contract::Error::ZeroData(..),
                ) => Ok(false),
                Err(e) => Err(crate::chain::contract_to_transport(e)),
            }
        })
        .await
}

/// Refuse a pair whose mode does not fit what the token is.
async fn check_mode(
    chain: &ChainClient,
    role: ChainRole,
    token: Address,
    mode: TokenMode,
) -> Result<(), ApplyError> {
    let nft = is_erc721(chain, token).await?;
    let wants_nft = mode.kind() == AssetKind::Erc721;
    if nft == wants_nft {
        return Ok(());
    }
    Err(ApplyError::ModeDoesNotFitToken {
        chain: role,
        token,
        is: if nft { "is" } else { "is not" },
        mode,
        hint: if nft {
            "erc721-lock-unlock or erc721-burn-mint"
        } else {
            "lock-unlock or burn-mint"
        },
    })
}

async fn has_code(chain: &ChainClient, address: Address) -> Result<bool, ChainError> {
    Ok(!chain
        .call(
            "eth_getCode",
            |p| async move { p.get_code_at(address).await },
        )
        .await?
        .is_empty())
}

/// Read both bridges and plan every chain the file names.
pub async fn prepare(config: &Config, desired: &Desired) -> Result<Vec<ChainPlan>, ApplyError> {
    let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
    prepare_on(&chains, config, desired).await
}

/// [`prepare`] on chains already connected (the relay's configuration watch).
pub async fn prepare_on(
    chains: &ChainPair,
    config: &Config,
    desired: &Desired,
) -> Result<Vec<ChainPlan>, ApplyError> {
    let mut out = Vec::new();
    for (role, chain) in chains.each() {
        let Some(want) = desired.get(role) else {
            continue;
        };
        let other = chains.get(role.other());
        for (key, asset) in &want.assets {
            let token = asset_key(key, role)?;
            if let Some(pair) = &asset.pair {
                if !has_code(chain, token).await? {
                    return Err(ApplyError::UnknownToken { chain: role, token });
                }
                if !has_code(other, pair.remote).await? {
                    return Err(ApplyError::UnknownToken {
                        chain: role.other(),
                        token: pair.remote,
                    });
                }
                check_mode(chain, role, token, pair.mode).await?;
            }
        }
        let cfg = config.chains.get(role);
        let live = super::state::read(chain, cfg.start_block, cfg.max_block_range).await?;
        let changes = plan(&live, want)?;
        let owner_is_contract = has_code(chain, live.owner).await?;
        out.push(ChainPlan {
            live,
            changes,
            owner_is_contract,
        });
    }
    Ok(out)
}

/// Apply the plans as `signer` (the owner's key): every chain checked first, then call by call.
pub async fn apply(
    config: &Config,
    plans: &[ChainPlan],
    signer: &crate::signer::OperatorSigner,
) -> Result<Vec<(String, B256)>, ApplyError> {
    for p in plans.iter().filter(|p| !p.changes.is_empty()) {
        if p.owner_is_contract {
            return Err(ApplyError::OwnerIsContract {
                chain: p.live.chain,
                owner: p.live.owner,
            });
        }
        if p.live.owner != signer.address() {
            return Err(ApplyError::NotOwner {
                chain: p.live.chain,
                signer: signer.address(),
                owner: p.live.owner,
            });
        }
    }
    let all: Vec<&Change> = plans.iter().flat_map(|p| p.changes.iter()).collect();
    let describe = |c: &Change| format!("{}: {}", c.chain, c.what);
    let mut done = Vec::new();
    for (i, change) in all.iter().enumerate() {
        let chain = config.chains.get(change.chain);
        match send_call(change.chain, chain, signer, change.to, change.data.clone()).await {
            Ok(tx) => {
                tracing::info!(chain = %change.chain, what = %change.what, %tx, "applied");
                done.push((describe(change), tx));
            }
            Err(cause) => {
                return Err(ApplyError::Stopped {
                    failed: describe(change),
                    cause,
                    done: done.iter().map(|(d, tx)| format!("{d} ({tx})")).collect(),
                    remaining: all
                        .iter()
                        .skip(i.saturating_add(1))
                        .map(|c| describe(c))
                        .collect(),
                });
            }
        }
    }
    Ok(done)
}

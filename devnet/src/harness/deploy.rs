//! Deploying and wiring a bridge pair, its token pair and the service registry.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use multibridge_contracts::{Bridge, ServiceRegistry, TestNFT, TestToken, TokenMode};
use serde::{Deserialize, Serialize};

use crate::error::DevnetError;
use crate::harness::tx::{confirm, deploying_provider};

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// Main chain RPC URL.
    pub main_url: String,
    /// Service chain RPC URL.
    pub service_url: String,
    /// Owner and deployer.
    pub owner: PrivateKeySigner,
    /// Operators registered on both bridges.
    pub operators: Vec<Address>,
    /// Votes needed to execute.
    pub threshold: u64,
    /// Native liquidity funded into each bridge.
    pub liquidity: U256,
    /// Users who receive test tokens on the main chain.
    pub users: Vec<Address>,
    /// Test tokens minted to each user.
    pub user_tokens: U256,
    /// Release-side limits set on both bridges for native coin and the test token.
    pub release_limits: ReleaseLimits,
    /// Deploy the devnet-only HistoryBridge (a Bridge that can fake a long history).
    pub history_bridge: bool,
    /// Pausers of both bridges beside the owner (the relays' guardian keys), funded on both
    /// chains.
    pub pausers: Vec<Address>,
}

/// What each guardian key gets on each chain for its pauses (DEVNET ONLY).
const GUARDIAN_FUNDS: U256 = U256::from_limbs([0, 1, 0, 0]); // 2^64 wei ≈ 18.4 coins

/// The release-side limits of a bridge (audit H-2): an outflow bucket per asset, the amount from
/// which a release always waits, and the wait. The contract's own default (no bucket) queues
/// every release for a day; a deployment sets what fits its liquidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseLimits {
    /// Most released at once per asset (base units; `u128::MAX`: no bucket).
    pub capacity: u128,
    /// Bucket refill per second.
    pub refill_per_second: u128,
    /// A release of at least this much always waits (0: none).
    pub delay_above: U256,
    /// Seconds a held-back release waits before anyone may execute it.
    pub release_delay: u64,
}

impl ReleaseLimits {
    /// No limit: every release at once (tests that are about something else).
    pub const OFF: Self = Self {
        capacity: u128::MAX,
        refill_per_second: 0,
        delay_above: U256::ZERO,
        release_delay: 0,
    };

    /// The devnet's: 10,000 coins an hour per asset, releases of 500 or more held 10 s (long
    /// enough to see in `status` and to cancel by hand, short enough for a demo).
    pub fn devnet() -> Self {
        const COIN: u128 = 1_000_000_000_000_000_000;
        Self {
            capacity: 10_000 * COIN,
            refill_per_second: 10_000 * COIN / 3_600,
            delay_above: U256::from(500 * COIN),
            release_delay: 10,
        }
    }
}

pub use crate::harness::manifest::ChainContracts;

/// NFTs each devnet user holds on the main chain after deployment.
pub const USER_NFTS: u64 = 3;

/// The test-NFT ids user `user` holds on the main chain after deployment:
/// `(user + 1) * 1000 + 1 ..= (user + 1) * 1000 + USER_NFTS`.
pub fn user_nft_ids(user: usize) -> Vec<U256> {
    let base = (user as u64).saturating_add(1).saturating_mul(1000);
    (1..=USER_NFTS)
        .map(|k| U256::from(base.saturating_add(k)))
        .collect()
}

/// Release-side limits of the test NFT (limits count tokens: one per transfer): 1,000 at once,
/// refilled at one a second, none held for the delay.
const NFT_OUTFLOW_CAPACITY: u128 = 1_000;

/// Addresses of a deployed pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Main chain contracts.
    pub main: ChainContracts,
    /// Service chain contracts.
    pub service: ChainContracts,
    /// `ServiceRegistry` on the main chain.
    pub registry: Address,
}

struct DeployedBridge {
    address: Address,
    block: u64,
    chain_id: u64,
}

async fn deploy_bridge<P: Provider + Clone>(
    chain: &str,
    provider: &P,
    owner: Address,
    plan: &DeployPlan,
) -> Result<DeployedBridge, DevnetError> {
    let step = format!("deploy Bridge on {chain}");
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| DevnetError::chain(&step, e))?;
    let threshold = U256::from(plan.threshold);
    let sent = if plan.history_bridge {
        multibridge_contracts::HistoryBridge::deploy_builder(
            provider.clone(),
            owner,
            plan.operators.clone(),
            threshold,
        )
        .send()
        .await
    } else {
        Bridge::deploy_builder(provider.clone(), owner, plan.operators.clone(), threshold)
            .send()
            .await
    };
    let receipt = confirm(&step, sent).await?;
    let address = receipt
        .contract_address
        .ok_or_else(|| DevnetError::chain(&step, "receipt has no contract address"))?;
    Ok(DeployedBridge {
        address,
        block: receipt.block_number.unwrap_or_default(),
        chain_id,
    })
}

async fn deploy_token<P: Provider + Clone>(
    provider: &P,
    name: &str,
    symbol: &str,
) -> Result<Address, DevnetError> {
    let step = format!("deploy TestToken {symbol}");
    let token = TestToken::deploy(provider.clone(), name.to_owned(), symbol.to_owned(), 18)
        .await
        .map_err(|e| DevnetError::chain(&step, e))?;
    Ok(*token.address())
}

/// Deploy and wire everything: bridges (each naming the other as counterpart), a test token pair
/// (lock/unlock on main, burn/mint on service), the registry on main; fund both bridges with
/// native liquidity and give every user test tokens.
pub async fn deploy_pair(plan: &DeployPlan) -> Result<Deployment, DevnetError> {
    let owner = plan.owner.address();
    let main = deploying_provider(&plan.main_url, &plan.owner)?;
    let service = deploying_provider(&plan.service_url, &plan.owner)?;

    let main_bridge = deploy_bridge("main", &main, owner, plan).await?;
    let service_bridge = deploy_bridge("service", &service, owner, plan).await?;
    let main_bridge_c = Bridge::new(main_bridge.address, main.clone());
    let service_bridge_c = Bridge::new(service_bridge.address, service.clone());

    confirm(
        "main setCounterpart",
        main_bridge_c
            .setCounterpart(
                U256::from(service_bridge.chain_id),
                service_bridge.address,
                service_bridge.block,
            )
            .send()
            .await,
    )
    .await?;
    confirm(
        "service setCounterpart",
        service_bridge_c
            .setCounterpart(
                U256::from(main_bridge.chain_id),
                main_bridge.address,
                main_bridge.block,
            )
            .send()
            .await,
    )
    .await?;

    for pauser in &plan.pausers {
        for (chain, bridge, url) in [
            ("main", &main_bridge_c, &plan.main_url),
            ("service", &service_bridge_c, &plan.service_url),
        ] {
            confirm(
                &format!("{chain} setPauser {pauser}"),
                bridge.setPauser(*pauser, true).send().await,
            )
            .await?;
            crate::harness::anvil::set_balance(url, *pauser, GUARDIAN_FUNDS).await?;
        }
    }

    let main_token = deploy_token(&main, "Multibridge Test Token", "MBT").await?;
    let service_token = deploy_token(&service, "Wrapped Multibridge Test Token", "wMBT").await?;
    confirm(
        "service token: bridge may mint",
        TestToken::new(service_token, service.clone())
            .setMinter(service_bridge.address, true)
            .send()
            .await,
    )
    .await?;
    confirm(
        "main registerTokenPair",
        main_bridge_c
            .registerTokenPair(main_token, service_token, TokenMode::LockUnlock as u8)
            .send()
            .await,
    )
    .await?;
    confirm(
        "service registerTokenPair",
        service_bridge_c
            .registerTokenPair(service_token, main_token, TokenMode::BurnMint as u8)
            .send()
            .await,
    )
    .await?;

    let main_nft = TestNFT::deploy(main.clone(), "Multibridge Test NFT".into(), "MBNFT".into())
        .await
        .map_err(|e| DevnetError::chain("deploy TestNFT MBNFT", e))?;
    let service_nft = TestNFT::deploy(
        service.clone(),
        "Wrapped Multibridge Test NFT".into(),
        "wMBNFT".into(),
    )
    .await
    .map_err(|e| DevnetError::chain("deploy TestNFT wMBNFT", e))?;
    confirm(
        "service NFT: bridge may mint",
        service_nft
            .setMinter(service_bridge.address, true)
            .send()
            .await,
    )
    .await?;
    for (chain, bridge, local, remote, mode) in [
        (
            "main",
            &main_bridge_c,
            *main_nft.address(),
            *service_nft.address(),
            TokenMode::Erc721LockUnlock,
        ),
        (
            "service",
            &service_bridge_c,
            *service_nft.address(),
            *main_nft.address(),
            TokenMode::Erc721BurnMint,
        ),
    ] {
        confirm(
            &format!("{chain} registerTokenPair (NFT)"),
            bridge
                .registerTokenPair(local, remote, mode as u8)
                .send()
                .await,
        )
        .await?;
        confirm(
            &format!("{chain} setOutflowLimit (NFT)"),
            bridge
                .setOutflowLimit(local, NFT_OUTFLOW_CAPACITY, 1, U256::ZERO)
                .send()
                .await,
        )
        .await?;
    }

    let limits = plan.release_limits;
    for (chain, bridge, token) in [
        ("main", &main_bridge_c, main_token),
        ("service", &service_bridge_c, service_token),
    ] {
        for asset in [Address::ZERO, token] {
            confirm(
                &format!("{chain} setOutflowLimit"),
                bridge
                    .setOutflowLimit(
                        asset,
                        limits.capacity,
                        limits.refill_per_second,
                        limits.delay_above,
                    )
                    .send()
                    .await,
            )
            .await?;
        }
        confirm(
            &format!("{chain} setReleaseDelay"),
            bridge.setReleaseDelay(limits.release_delay).send().await,
        )
        .await?;
    }

    let registry = ServiceRegistry::deploy(main.clone())
        .await
        .map_err(|e| DevnetError::chain("deploy ServiceRegistry", e))?;

    if plan.liquidity > U256::ZERO {
        confirm(
            "fund main bridge",
            main_bridge_c.fund().value(plan.liquidity).send().await,
        )
        .await?;
        confirm(
            "fund service bridge",
            service_bridge_c.fund().value(plan.liquidity).send().await,
        )
        .await?;
    }
    let main_token_c = TestToken::new(main_token, main.clone());
    for (index, user) in plan.users.iter().enumerate() {
        confirm(
            "mint user tokens",
            main_token_c.mint(*user, plan.user_tokens).send().await,
        )
        .await?;
        for id in user_nft_ids(index) {
            confirm("mint user NFT", main_nft.mint(*user, id).send().await).await?;
        }
    }

    Ok(Deployment {
        main: ChainContracts {
            chain_id: main_bridge.chain_id,
            bridge: main_bridge.address,
            bridge_block: main_bridge.block,
            token: main_token,
            token_mode: TokenMode::LockUnlock,
            nft: *main_nft.address(),
        },
        service: ChainContracts {
            chain_id: service_bridge.chain_id,
            bridge: service_bridge.address,
            bridge_block: service_bridge.block,
            token: service_token,
            token_mode: TokenMode::BurnMint,
            nft: *service_nft.address(),
        },
        registry: *registry.address(),
    })
}

//! Drives transfers on a devnet through the Rust bindings: user requests on the source chain,
//! operator votes on the destination, and the reads that check the outcome.

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::Bridge::{self, BridgeErrors};
use multibridge_contracts::{ChainRole, Lane, Request, TestNFT, TestToken, request_from_log};

use crate::error::DevnetError;
use crate::harness::manifest::{AccountEntry, ChainEntry, Manifest};
use crate::harness::tx::{RECEIPT_TIMEOUT, confirm, contract_error, signing_provider};

/// Fee room (wei, 100 gwei) above the quoted max fee of a burst's transactions: a long burst
/// fills blocks and raises the base fee before its last transactions are mined.
const BURST_FEE_ROOM: u128 = 100_000_000_000;

/// How long a burst of `count` transactions may take to be mined: a single transaction's
/// timeout plus 20 ms per transaction (a loaded machine mines a block of hundreds of requests
/// in more than its block time).
fn burst_deadline(count: usize) -> Duration {
    RECEIPT_TIMEOUT.saturating_add(
        Duration::from_millis(20).saturating_mul(u32::try_from(count).unwrap_or(u32::MAX)),
    )
}

/// What one vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Recorded, below the threshold.
    Recorded {
        /// Votes for this payload after this one.
        votes: U256,
        /// The vote transaction.
        tx: B256,
    },
    /// Recorded and the transfer executed.
    Executed {
        /// The vote transaction.
        tx: B256,
    },
    /// The bridge refused the vote (e.g. `AlreadyHandled`), before any transaction was mined.
    Refused(RefusedVote),
}

/// A vote the bridge refused, with its decoded custom error when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedVote {
    /// The decoded custom error.
    pub error: Option<BridgeErrors>,
    /// The raw error message.
    pub message: String,
}

/// Which test token a request moves.
#[derive(Debug, Clone, Copy)]
enum TokenKind {
    Erc20,
    Erc721,
}

/// Transfers and votes on a running devnet.
#[derive(Debug, Clone)]
pub struct Driver {
    manifest: Manifest,
}

impl Driver {
    /// A driver for the devnet described by `manifest`.
    pub fn new(manifest: Manifest) -> Self {
        Self { manifest }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// One chain's entry.
    pub fn chain(&self, role: ChainRole) -> &ChainEntry {
        match role {
            ChainRole::Main => &self.manifest.main,
            ChainRole::Service => &self.manifest.service,
        }
    }

    fn signer(entry: &AccountEntry) -> Result<PrivateKeySigner, DevnetError> {
        entry
            .private_key
            .parse()
            .map_err(|e| DevnetError::Invalid(format!("devnet key of {}: {e}", entry.address)))
    }

    /// User `index`'s signer.
    pub fn user(&self, index: usize) -> Result<PrivateKeySigner, DevnetError> {
        let entry = self
            .manifest
            .users
            .get(index)
            .ok_or_else(|| DevnetError::Invalid(format!("no user {index}")))?;
        Self::signer(entry)
    }

    /// Operator `index`'s signer.
    pub fn operator(&self, index: usize) -> Result<PrivateKeySigner, DevnetError> {
        let entry = self
            .manifest
            .operators
            .get(index)
            .ok_or_else(|| DevnetError::Invalid(format!("no operator {index}")))?;
        Self::signer(&entry.account)
    }

    /// The owner's signer (deployer, owner and pauser of every contract).
    pub fn owner(&self) -> Result<PrivateKeySigner, DevnetError> {
        Self::signer(&self.manifest.owner)
    }

    /// A native-coin request of `amount` to `to` at `nonce` of `lane` that the source never
    /// made (its transaction hash is made up): what a compromised threshold would vote.
    pub fn forged_native_request(
        &self,
        lane: Lane,
        nonce: u64,
        to: Address,
        amount: U256,
    ) -> Request {
        let source = &self.chain(lane.source()).contracts;
        Request {
            nonce,
            kind: 0,
            from: to,
            to,
            token: Address::ZERO,
            amount,
            fee: U256::ZERO,
            extraData: Bytes::new(),
            srcChainId: U256::from(source.chain_id),
            srcBridge: source.bridge,
            srcTxHash: B256::repeat_byte(0xf0),
            srcBlockNumber: 1,
            srcLogIndex: 0,
        }
    }

    /// A read-only provider for one chain.
    pub fn provider(&self, role: ChainRole) -> Result<DynProvider, DevnetError> {
        let url = &self.chain(role).rpc_url;
        let url = url.parse().map_err(|_| DevnetError::BadUrl(url.clone()))?;
        Ok(crate::harness::http::provider(url))
    }

    /// A provider that signs as `signer` on one chain.
    pub fn wallet_provider(
        &self,
        role: ChainRole,
        signer: &PrivateKeySigner,
    ) -> Result<DynProvider, DevnetError> {
        signing_provider(&self.chain(role).rpc_url, signer)
    }

    /// Request a native transfer of `amount` from user `user` to `to` on `lane`; returns the
    /// request as a relay would build it from the mined log.
    pub async fn request_native(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        amount: U256,
    ) -> Result<Request, DevnetError> {
        let source = lane.source();
        let provider = self.wallet_provider(source, &self.user(user)?)?;
        let bridge = Bridge::new(self.chain(source).contracts.bridge, provider);
        let fee = bridge
            .fee(Address::ZERO)
            .call()
            .await
            .map_err(|e| DevnetError::chain("read native fee", e))?;
        let receipt = confirm(
            "requestNativeTransfer",
            bridge
                .requestNativeTransfer(to, Bytes::new())
                .value(amount.saturating_add(fee))
                .send()
                .await,
        )
        .await?;
        self.request_in(source, &receipt)
    }

    /// User `user` adds `amount` of native liquidity to the bridge on `role` (`fund()`).
    pub async fn fund_bridge(
        &self,
        role: ChainRole,
        user: usize,
        amount: U256,
    ) -> Result<(), DevnetError> {
        let provider = self.wallet_provider(role, &self.user(user)?)?;
        let bridge = Bridge::new(self.chain(role).contracts.bridge, provider);
        confirm("fund", bridge.fund().value(amount).send().await).await?;
        Ok(())
    }

    /// Send `count` native requests from user `user` back to back (without waiting for each
    /// receipt), then wait for all of them; returns the requests in nonce order.
    pub async fn request_native_burst(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        amount: U256,
        count: usize,
    ) -> Result<Vec<Request>, DevnetError> {
        self.request_native_burst_with(lane, user, to, amount, &vec![Bytes::new(); count])
            .await
    }

    /// [`request_native_burst`](Self::request_native_burst) with request `i` carrying
    /// `extra[i]` as its extraData.
    pub async fn request_native_burst_with(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        amount: U256,
        extra: &[Bytes],
    ) -> Result<Vec<Request>, DevnetError> {
        let transfers: Vec<(Address, U256, Bytes)> =
            extra.iter().map(|e| (to, amount, e.clone())).collect();
        self.request_native_each(lane, user, &transfers).await
    }

    /// Send one native request per `(recipient, amount, extraData)` from user `user` back to
    /// back (without waiting for each receipt: with block times they share blocks), then wait
    /// for all of them; returns the requests in nonce order.
    pub async fn request_native_each(
        &self,
        lane: Lane,
        user: usize,
        transfers: &[(Address, U256, Bytes)],
    ) -> Result<Vec<Request>, DevnetError> {
        let source = lane.source();
        let provider = self.wallet_provider(source, &self.user(user)?)?;
        let bridge = Bridge::new(self.chain(source).contracts.bridge, provider.clone());
        let fee = bridge
            .fee(Address::ZERO)
            .call()
            .await
            .map_err(|e| DevnetError::chain("read native fee", e))?;
        let (first_nonce, fees) = self.burst_start(&provider, user).await?;
        // One estimate and one fee quote for the whole burst (the requests differ only in
        // recipient, amount and extraData; the longest extraData is estimated, plus a fifth): a
        // node's estimate per transaction would make a large burst crawl.
        let mut gas = 0u64;
        if let Some((to, amount, data)) = transfers.iter().max_by_key(|(_, _, d)| d.len()) {
            gas = bridge
                .requestNativeTransfer(*to, data.clone())
                .value(amount.saturating_add(fee))
                .estimate_gas()
                .await
                .map_err(|e| DevnetError::chain("estimate requestNativeTransfer", e))?;
        }
        let mut pending = Vec::with_capacity(transfers.len());
        for (i, (to, amount, data)) in transfers.iter().enumerate() {
            let sent = bridge
                .requestNativeTransfer(*to, data.clone())
                .value(amount.saturating_add(fee))
                .nonce(first_nonce.saturating_add(i as u64))
                .gas(gas.saturating_add(gas / 5))
                .max_fee_per_gas(fees.max_fee_per_gas.saturating_add(BURST_FEE_ROOM))
                .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
                .send()
                .await;
            pending.push(sent);
        }
        self.burst_requests(source, "requestNativeTransfer (burst)", pending)
            .await
    }

    /// The next nonce of user `user` (pending included) and the fees to bid for a burst.
    async fn burst_start(
        &self,
        provider: &DynProvider,
        user: usize,
    ) -> Result<(u64, alloy::eips::eip1559::Eip1559Estimation), DevnetError> {
        let first_nonce = provider
            .get_transaction_count(self.user(user)?.address())
            .pending()
            .await
            .map_err(|e| DevnetError::chain("eth_getTransactionCount", e))?;
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| DevnetError::chain("eth_feeHistory", e))?;
        Ok((first_nonce, fees))
    }

    /// Wait for every request transaction of a burst on `source`; its requests in nonce order.
    /// The burst as a whole gets [`burst_deadline`] (found in CI: on a loaded machine one
    /// receipt of a 4,700-request burst came later than a single transaction's 30 s), and
    /// while its transactions keep being mined, a single transaction's timeout past the last
    /// one mined (found in CI twice: four users' bursts of 1,174 requests each share the same
    /// blocks, and a loaded node mined the last of them after 53 s while mining all along); one
    /// that misses both is named, with whether the node still holds it.
    async fn burst_requests(
        &self,
        source: ChainRole,
        what: &str,
        pending: Vec<
            Result<
                alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
                alloy::contract::Error,
            >,
        >,
    ) -> Result<Vec<Request>, DevnetError> {
        let hashes = pending
            .into_iter()
            .map(|sent| {
                sent.map(|p| *p.tx_hash())
                    .map_err(|e| contract_error(what, e))
            })
            .collect::<Result<Vec<B256>, DevnetError>>()?;
        let provider = self.provider(source)?;
        let allowed = burst_deadline(hashes.len());
        let started = std::time::Instant::now();
        let mut deadline = started + allowed;
        let mut requests = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let receipt = loop {
                let receipt = provider
                    .get_transaction_receipt(hash)
                    .await
                    .map_err(|e| DevnetError::chain(what, e))?;
                if let Some(receipt) = receipt {
                    // Mined: the burst moves, so it may go on for a while longer.
                    deadline = deadline.max(std::time::Instant::now() + RECEIPT_TIMEOUT);
                    break receipt;
                }
                if std::time::Instant::now() >= deadline {
                    let held = provider
                        .get_transaction_by_hash(hash)
                        .await
                        .ok()
                        .flatten()
                        .is_some();
                    return Err(DevnetError::chain(
                        what,
                        format!(
                            "transaction {hash} not mined within {:?} ({:?} for the burst, and {RECEIPT_TIMEOUT:?} past the last of it mined; {})",
                            started.elapsed(),
                            allowed,
                            if held {
                                "the node still holds it"
                            } else {
                                "the node no longer knows it: dropped"
                            }
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if !receipt.status() {
                return Err(DevnetError::chain(
                    what,
                    format!("transaction {hash} reverted"),
                ));
            }
            requests.push(self.request_in(source, &receipt)?);
        }
        requests.sort_by_key(|r| r.nonce);
        Ok(requests)
    }

    /// Send `count` ERC-20 requests of `amount` of the test token from user `user` to `to` back
    /// to back after one approval of them all, then wait for all; returns them in nonce order.
    pub async fn request_erc20_burst(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        amount: U256,
        count: usize,
    ) -> Result<Vec<Request>, DevnetError> {
        let source = lane.source();
        let contracts = &self.chain(source).contracts;
        let provider = self.wallet_provider(source, &self.user(user)?)?;
        confirm(
            "approve",
            TestToken::new(contracts.token, provider.clone())
                .approve(contracts.bridge, amount.saturating_mul(U256::from(count)))
                .send()
                .await,
        )
        .await?;
        let bridge = Bridge::new(contracts.bridge, provider.clone());
        let fee = bridge
            .fee(contracts.token)
            .call()
            .await
            .map_err(|e| DevnetError::chain("read token fee", e))?;
        let call = bridge
            .requestERC20Transfer(contracts.token, to, amount, Bytes::new())
            .value(fee);
        let gas = call
            .estimate_gas()
            .await
            .map_err(|e| DevnetError::chain("estimate requestERC20Transfer", e))?;
        let (first_nonce, fees) = self.burst_start(&provider, user).await?;
        let mut pending = Vec::with_capacity(count);
        for i in 0..count {
            let sent = bridge
                .requestERC20Transfer(contracts.token, to, amount, Bytes::new())
                .value(fee)
                .nonce(first_nonce.saturating_add(i as u64))
                .gas(gas.saturating_add(gas / 5))
                .max_fee_per_gas(fees.max_fee_per_gas.saturating_add(BURST_FEE_ROOM))
                .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
                .send()
                .await;
            pending.push(sent);
        }
        self.burst_requests(source, "requestERC20Transfer (burst)", pending)
            .await
    }

    /// Approve and request an ERC-20 transfer of the test token on `lane`.
    pub async fn request_erc20(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        amount: U256,
    ) -> Result<Request, DevnetError> {
        self.approve_and_request(lane, user, to, TokenKind::Erc20, amount)
            .await
    }

    /// Approve and request an ERC-721 transfer of test-NFT `token_id` on `lane` (the user must
    /// hold it on the source chain: on main, see `deploy::user_nft_ids`).
    pub async fn request_erc721(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        token_id: U256,
    ) -> Result<Request, DevnetError> {
        self.approve_and_request(lane, user, to, TokenKind::Erc721, token_id)
            .await
    }

    /// `approve(bridge, value)` on the test token or NFT (the same call for both: an amount or
    /// an id), then the request with the asset's fee.
    async fn approve_and_request(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        kind: TokenKind,
        value: U256,
    ) -> Result<Request, DevnetError> {
        let source = lane.source();
        let contracts = &self.chain(source).contracts;
        let token = match kind {
            TokenKind::Erc20 => contracts.token,
            TokenKind::Erc721 => contracts.nft,
        };
        let provider = self.wallet_provider(source, &self.user(user)?)?;
        confirm(
            "approve",
            TestToken::new(token, provider.clone())
                .approve(contracts.bridge, value)
                .send()
                .await,
        )
        .await?;
        let bridge = Bridge::new(contracts.bridge, provider);
        let fee = bridge
            .fee(token)
            .call()
            .await
            .map_err(|e| DevnetError::chain("read token fee", e))?;
        let sent = match kind {
            TokenKind::Erc20 => {
                bridge
                    .requestERC20Transfer(token, to, value, Bytes::new())
                    .value(fee)
                    .send()
                    .await
            }
            TokenKind::Erc721 => {
                bridge
                    .requestERC721Transfer(token, to, value, Bytes::new())
                    .value(fee)
                    .send()
                    .await
            }
        };
        let receipt = confirm("request a token transfer", sent).await?;
        self.request_in(source, &receipt)
    }

    /// Request an ERC-721 transfer in one call, the way wallets send NFTs:
    /// `safeTransferFrom(user, bridge, id, abi.encode(to, ""))` (no approval; the bridge's
    /// receiver hook emits the request).
    pub async fn send_erc721_to_bridge(
        &self,
        lane: Lane,
        user: usize,
        to: Address,
        token_id: U256,
    ) -> Result<Request, DevnetError> {
        use alloy::sol_types::SolValue;
        let source = lane.source();
        let chain = self.chain(source);
        let signer = self.user(user)?;
        let from = signer.address();
        let provider = self.wallet_provider(source, &signer)?;
        let nft = TestNFT::new(chain.contracts.nft, provider);
        let data = (to, Bytes::new()).abi_encode_params();
        let receipt = confirm(
            "safeTransferFrom to the bridge",
            nft.safeTransferFrom_1(from, chain.contracts.bridge, token_id, data.into())
                .send()
                .await,
        )
        .await?;
        self.request_in(source, &receipt)
    }

    /// Who holds test-NFT `token_id` on one chain (`None`: it does not exist there).
    pub async fn nft_owner(
        &self,
        role: ChainRole,
        token_id: U256,
    ) -> Result<Option<Address>, DevnetError> {
        let nft = TestNFT::new(self.chain(role).contracts.nft, self.provider(role)?);
        let exists = nft
            .exists(token_id)
            .call()
            .await
            .map_err(|e| DevnetError::chain("NFT exists", e))?;
        if !exists {
            return Ok(None);
        }
        nft.ownerOf(token_id)
            .call()
            .await
            .map(Some)
            .map_err(|e| DevnetError::chain("ownerOf", e))
    }

    fn request_in(
        &self,
        source: ChainRole,
        receipt: &TransactionReceipt,
    ) -> Result<Request, DevnetError> {
        let chain_id = self.chain(source).contracts.chain_id;
        receipt
            .inner
            .logs()
            .iter()
            .find(|log| log.topic0() == Some(&Bridge::RequestValueTransfer::SIGNATURE_HASH))
            .ok_or_else(|| {
                DevnetError::Invalid("request receipt has no RequestValueTransfer".into())
            })
            .and_then(|log| {
                request_from_log(log, chain_id).map_err(|e| DevnetError::Invalid(e.to_string()))
            })
    }

    /// The vote domain of `lane` (its vote keys and digests, as the bridges compute them).
    pub fn vote_domain(&self, lane: Lane) -> multibridge_contracts::VoteDomain {
        let (source, destination) = (
            &self.chain(lane.source()).contracts,
            &self.chain(lane.destination()).contracts,
        );
        multibridge_contracts::VoteDomain {
            src_chain_id: source.chain_id,
            src_bridge: source.bridge,
            dst_chain_id: destination.chain_id,
            dst_bridge: destination.bridge,
        }
    }

    /// Operators `signers` sign an attested batch of `requests` for `lane`'s destination and
    /// operator `signers[0]` sends it (`executeAttested`); returns how many it executed.
    pub async fn attest(
        &self,
        lane: Lane,
        signers: &[usize],
        requests: &[Request],
    ) -> Result<u64, DevnetError> {
        use alloy::signers::SignerSync;
        use multibridge_contracts::attestation::{canonical_bytes, pack_signatures};
        let digest = self.vote_domain(lane).batch_digest(requests);
        let mut signatures = Vec::new();
        for &i in signers {
            let signer = self.operator(i)?;
            let signature = signer
                .sign_hash_sync(&digest)
                .map_err(|e| DevnetError::Invalid(format!("operator {i} did not sign: {e}")))?;
            signatures.push((signer.address(), canonical_bytes(&signature)));
        }
        let sender = self.operator(
            *signers
                .first()
                .ok_or_else(|| DevnetError::Invalid("an attested batch needs a signer".into()))?,
        )?;
        let provider = self.wallet_provider(lane.destination(), &sender)?;
        let bridge = Bridge::new(self.chain(lane.destination()).contracts.bridge, provider);
        // Not estimated: an estimate finds the least gas that does not revert, and a batch with
        // too little gas left for an item skips it rather than revert.
        let call = bridge
            .executeAttested(requests.to_vec(), pack_signatures(&signatures))
            .gas(1_000_000u64.saturating_add(400_000u64.saturating_mul(requests.len() as u64)));
        let receipt = confirm("executeAttested", call.send().await).await?;
        let executed = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<Bridge::BatchAttested>().ok())
            .map(|b| u64::try_from(b.inner.data.executed).unwrap_or(u64::MAX))
            .ok_or_else(|| {
                DevnetError::Invalid("executeAttested logged no BatchAttested".into())
            })?;
        Ok(executed)
    }

    /// Operator `operator` votes for `request` on `lane`'s destination bridge.
    pub async fn vote(
        &self,
        lane: Lane,
        operator: usize,
        request: &Request,
    ) -> Result<VoteOutcome, DevnetError> {
        let destination = lane.destination();
        let provider = self.wallet_provider(destination, &self.operator(operator)?)?;
        let bridge = Bridge::new(self.chain(destination).contracts.bridge, provider);
        let sent = match bridge.handleValueTransfer(request.clone()).send().await {
            Ok(sent) => sent,
            Err(e) => {
                return Ok(VoteOutcome::Refused(RefusedVote {
                    error: e.as_decoded_interface_error::<BridgeErrors>(),
                    message: e.to_string(),
                }));
            }
        };
        let receipt = confirm("handleValueTransfer", Ok(sent)).await?;
        let logs = receipt.inner.logs();
        if logs
            .iter()
            .any(|l| l.topic0() == Some(&Bridge::HandleValueTransfer::SIGNATURE_HASH))
        {
            return Ok(VoteOutcome::Executed {
                tx: receipt.transaction_hash,
            });
        }
        let votes = logs
            .iter()
            .find_map(|l| l.log_decode::<Bridge::VoteCast>().ok())
            .map(|l| l.inner.data.votes)
            .unwrap_or_default();
        Ok(VoteOutcome::Recorded {
            votes,
            tx: receipt.transaction_hash,
        })
    }

    /// How many `HandleValueTransfer` events for `nonce` the destination bridge of `lane` emitted.
    pub async fn handle_count(&self, lane: Lane, nonce: u64) -> Result<usize, DevnetError> {
        let destination = lane.destination();
        let chain = self.chain(destination);
        let filter = Filter::new()
            .address(chain.contracts.bridge)
            .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
            .topic1(B256::from(U256::from(nonce)))
            .from_block(chain.contracts.bridge_block);
        let logs = self
            .provider(destination)?
            .get_logs(&filter)
            .await
            .map_err(|e| DevnetError::chain("get HandleValueTransfer logs", e))?;
        Ok(logs.len())
    }

    /// Give `who` exactly `wei` of native coin on one chain (anvil's `anvil_setBalance`).
    pub async fn set_balance(
        &self,
        role: ChainRole,
        who: Address,
        wei: U256,
    ) -> Result<(), DevnetError> {
        crate::harness::anvil::set_balance(&self.chain(role).rpc_url, who, wei).await
    }

    /// The unix time of the latest block of one chain.
    pub async fn latest_block_time(&self, role: ChainRole) -> Result<u64, DevnetError> {
        self.provider(role)?
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| DevnetError::chain("eth_getBlockByNumber", e))?
            .map(|b| b.header.timestamp)
            .ok_or_else(|| DevnetError::Invalid("no latest block".into()))
    }

    /// Native balance of `who` on one chain.
    pub async fn native_balance(&self, role: ChainRole, who: Address) -> Result<U256, DevnetError> {
        self.provider(role)?
            .get_balance(who)
            .await
            .map_err(|e| DevnetError::chain("eth_getBalance", e))
    }

    /// Test-token balance of `who` on one chain.
    pub async fn token_balance(&self, role: ChainRole, who: Address) -> Result<U256, DevnetError> {
        TestToken::new(self.chain(role).contracts.token, self.provider(role)?)
            .balanceOf(who)
            .call()
            .await
            .map_err(|e| DevnetError::chain("balanceOf", e))
    }

    /// Test-token total supply on one chain.
    pub async fn token_supply(&self, role: ChainRole) -> Result<U256, DevnetError> {
        TestToken::new(self.chain(role).contracts.token, self.provider(role)?)
            .totalSupply()
            .call()
            .await
            .map_err(|e| DevnetError::chain("totalSupply", e))
    }
}

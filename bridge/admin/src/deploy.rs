//! `multibridge deploy`: a bridge pair and the service registry on two chains, from nothing to
//! wired, resumable. Every input is checked before the first transaction (chain ids, threshold
//! against operators, the owner's funds); every transaction goes through the [journal] first;
//! every contract's runtime code is checked against the committed artifact before anything is
//! wired to it; the result is `deployment.json` and a starter relay config per operator.
//!
//! [journal]: super::journal

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use multibridge_contracts::artifacts::{CodeMismatch, Deployable, check_runtime};
use multibridge_contracts::{Bridge, ChainRole, ServiceRegistry};

use super::journal::{
    ChainDeployment, DeploymentJournal, JOURNAL_VERSION, JournalError, Step, StepState,
};

/// How long one step waits for its receipt.
const MINED_WITHIN: Duration = Duration::from_secs(180);
/// Gas estimate margin.
const GAS_MARGIN_PERCENT: u64 = 20;

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// Main chain RPC URL.
    pub main_rpc: String,
    /// Service chain RPC URL.
    pub service_rpc: String,
    /// Expected main chain id (checked when given).
    pub main_chain_id: Option<u64>,
    /// Expected service chain id (checked when given).
    pub service_chain_id: Option<u64>,
    /// Operators registered on both bridges.
    pub operators: Vec<Address>,
    /// Votes needed.
    pub threshold: u64,
    /// Where `deployment.json` and the starter configs go.
    pub out: PathBuf,
    /// Confirmation depth written in the starter configs.
    pub confirmations: u64,
    /// The owner key was given raw (accepted on devnet chains only).
    pub raw_owner_key: bool,
}

/// Why a deployment stopped. Nothing after the failing step was sent; run the same command
/// again to resume once the cause is fixed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A bad argument, found before anything was sent.
    #[error("{0}")]
    Invalid(String),
    /// A chain answered with another id than expected.
    #[error(
        "the {chain} RPC serves chain {actual}, but {expected} was given: check --{chain}-rpc and --{chain}-chain-id"
    )]
    WrongChain {
        /// Which chain.
        chain: ChainRole,
        /// Given.
        expected: u64,
        /// Served.
        actual: u64,
    },
    /// The owner cannot pay for gas on a chain.
    #[error(
        "the owner {owner} has no native balance on the {chain} chain to pay for the deployment: fund it"
    )]
    Unfunded {
        /// Which chain.
        chain: ChainRole,
        /// The owner.
        owner: Address,
    },
    /// The output directory holds a deployment with other inputs.
    #[error(
        "{dir} holds another deployment ({what} differs): give another --out, or the same arguments to resume it"
    )]
    OtherDeployment {
        /// The directory.
        dir: PathBuf,
        /// What differs.
        what: String,
    },
    /// A chain could not be reached or refused a call.
    #[error("{step} on the {chain} chain: {message}")]
    Rpc {
        /// The step.
        step: String,
        /// Which chain.
        chain: ChainRole,
        /// What the node said (URLs redacted).
        message: String,
    },
    /// A transaction reverted.
    #[error("{step} on the {chain} chain: transaction {tx} reverted")]
    Reverted {
        /// The step.
        step: String,
        /// Which chain.
        chain: ChainRole,
        /// The transaction.
        tx: B256,
    },
    /// A sent transaction was not seen mined in time.
    #[error(
        "{step} on the {chain} chain: transaction {tx} not mined within {waited:?}; run the command again to keep waiting (it is not sent twice)"
    )]
    NotMined {
        /// The step.
        step: String,
        /// Which chain.
        chain: ChainRole,
        /// The transaction.
        tx: B256,
        /// How long.
        waited: Duration,
    },
    /// The nonce of a recorded step was used by another transaction of the owner.
    #[error(
        "{step} on the {chain} chain: the owner's nonce {nonce} was used by another transaction, not {tx}; the journal no longer matches the chain (check the owner's transactions)"
    )]
    NonceTaken {
        /// The step.
        step: String,
        /// Which chain.
        chain: ChainRole,
        /// The nonce.
        nonce: u64,
        /// The recorded transaction.
        tx: B256,
    },
    /// Deployed code is not the committed artifact's.
    #[error(
        "{contract} at {address} on the {chain} chain is not the committed artifact: {problem}"
    )]
    Bytecode {
        /// Which contract.
        contract: &'static str,
        /// Where.
        address: Address,
        /// Which chain.
        chain: ChainRole,
        /// What differs.
        problem: CodeMismatch,
    },
    /// A wiring read back wrong.
    #[error("{0}")]
    Check(String),
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A starter config could not be written or does not load.
    #[error("starter config {path}: {message}")]
    StarterConfig {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn rpc(step: &str, chain: ChainRole, e: impl std::fmt::Display) -> DeployError {
    DeployError::Rpc {
        step: step.to_owned(),
        chain,
        message: multibridge_monitoring::redact_urls(&e.to_string()).into_owned(),
    }
}

/// One chain as the deployment sees it.
struct Chain {
    role: ChainRole,
    provider: DynProvider,
    chain_id: u64,
}

async fn connect(role: ChainRole, url: &str, expected: Option<u64>) -> Result<Chain, DeployError> {
    let parsed = url
        .parse()
        .map_err(|_| DeployError::Invalid(format!("--{role}-rpc is not a URL")))?;
    let provider = ProviderBuilder::new().connect_http(parsed).erased();
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| rpc("eth_chainId", role, e))?;
    if let Some(expected) = expected
        && expected != chain_id
    {
        return Err(DeployError::WrongChain {
            chain: role,
            expected,
            actual: chain_id,
        });
    }
    Ok(Chain {
        role,
        provider,
        chain_id,
    })
}

/// The deployer: both chains, the owner's key, the journal.
struct Deployer {
    main: Chain,
    service: Chain,
    wallet: EthereumWallet,
    owner: Address,
    journal: DeploymentJournal,
    dir: PathBuf,
}

fn planned_steps() -> Vec<Step> {
    [
        ("deploy Bridge", ChainRole::Main),
        ("deploy Bridge", ChainRole::Service),
        ("deploy ServiceRegistry", ChainRole::Main),
        ("setCounterpart", ChainRole::Main),
        ("setCounterpart", ChainRole::Service),
    ]
    .into_iter()
    .map(|(name, chain)| Step {
        name: name.to_owned(),
        chain,
        state: StepState::Planned,
    })
    .collect()
}

impl Deployer {
    fn chain(&self, role: ChainRole) -> &Chain {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }

    async fn receipt(
        &self,
        step: &str,
        chain: &Chain,
        tx: B256,
    ) -> Result<Option<TransactionReceipt>, DeployError> {
        chain
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| rpc(step, chain.role, e))
    }

    async fn wait_mined(
        &self,
        step: &str,
        chain: &Chain,
        tx: B256,
    ) -> Result<TransactionReceipt, DeployError> {
        let started = Instant::now();
        loop {
            if let Some(receipt) = self.receipt(step, chain, tx).await? {
                return Ok(receipt);
            }
            if started.elapsed() > MINED_WITHIN {
                return Err(DeployError::NotMined {
                    step: step.to_owned(),
                    chain: chain.role,
                    tx,
                    waited: MINED_WITHIN,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Run step `index`: skip it when done, finish it when sent, send it when planned.
    async fn run(
        &mut self,
        index: usize,
        request: TransactionRequest,
    ) -> Result<(u64, Option<Address>), DeployError> {
        let Some(step) = self.journal.steps.get(index).cloned() else {
            return Err(DeployError::Invalid(format!("no step {index}")));
        };
        let chain = self.chain(step.chain);
        let name = format!("{} ({})", step.name, index.saturating_add(1));
        let (tx, receipt) = match step.state {
            StepState::Done {
                block, contract, ..
            } => return Ok((block, contract)),
            StepState::Sent { nonce, tx, raw } => {
                if let Some(receipt) = self.receipt(&name, chain, tx).await? {
                    (tx, receipt)
                } else {
                    tracing::info!(step = %name, %tx, "resuming: broadcasting the recorded transaction again");
                    if let Err(e) = chain.provider.send_raw_transaction(&raw).await {
                        // Already known: fine. Nonce used: by this transaction (mined meanwhile)
                        // or by another one.
                        let used = chain
                            .provider
                            .get_transaction_count(self.owner)
                            .await
                            .map_err(|e| rpc(&name, chain.role, e))?;
                        if used > nonce && self.receipt(&name, chain, tx).await?.is_none() {
                            return Err(DeployError::NonceTaken {
                                step: name,
                                chain: chain.role,
                                nonce,
                                tx,
                            });
                        }
                        tracing::debug!(step = %name, error = %e, "re-broadcast refused; waiting for the recorded transaction");
                    }
                    (tx, self.wait_mined(&name, chain, tx).await?)
                }
            }
            StepState::Planned => {
                let nonce = chain
                    .provider
                    .get_transaction_count(self.owner)
                    .pending()
                    .await
                    .map_err(|e| rpc(&name, chain.role, e))?;
                let request = request
                    .with_from(self.owner)
                    .with_chain_id(chain.chain_id)
                    .with_nonce(nonce);
                let gas = chain
                    .provider
                    .estimate_gas(request.clone())
                    .await
                    .map_err(|e| rpc(&name, chain.role, e))?;
                let fees = chain
                    .provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(|e| rpc(&name, chain.role, e))?;
                let envelope = request
                    .with_gas_limit(
                        gas.saturating_add(gas.saturating_mul(GAS_MARGIN_PERCENT) / 100),
                    )
                    .with_max_fee_per_gas(fees.max_fee_per_gas)
                    .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
                    .build(&self.wallet)
                    .await
                    .map_err(|e| rpc(&name, chain.role, e))?;
                let raw = alloy::primitives::Bytes::from(alloy::eips::Encodable2718::encoded_2718(
                    &envelope,
                ));
                let tx = *envelope.tx_hash();
                // Recorded before it leaves: a crash from here on resumes with these bytes.
                if let Some(s) = self.journal.steps.get_mut(index) {
                    s.state = StepState::Sent {
                        nonce,
                        tx,
                        raw: raw.clone(),
                    };
                }
                self.journal.save(&self.dir)?;
                let chain = self.chain(step.chain);
                let _pending = chain
                    .provider
                    .send_raw_transaction(&raw)
                    .await
                    .map_err(|e| rpc(&name, chain.role, e))?;
                tracing::info!(step = %name, %tx, nonce, "sent");
                (tx, self.wait_mined(&name, chain, tx).await?)
            }
        };
        let chain = self.chain(step.chain);
        if !receipt.status() {
            return Err(DeployError::Reverted {
                step: name,
                chain: chain.role,
                tx,
            });
        }
        let block = receipt.block_number.unwrap_or_default();
        let contract = receipt.contract_address;
        if let Some(s) = self.journal.steps.get_mut(index) {
            s.state = StepState::Done {
                tx,
                block,
                contract,
            };
        }
        self.journal.save(&self.dir)?;
        tracing::info!(step = %name, %tx, block, ?contract, "done");
        Ok((block, contract))
    }

    async fn check_code(
        &self,
        role: ChainRole,
        contract: Deployable,
        address: Address,
        immutables: &[(&str, U256)],
    ) -> Result<(), DeployError> {
        let chain = self.chain(role);
        let code = chain
            .provider
            .get_code_at(address)
            .await
            .map_err(|e| rpc("eth_getCode", role, e))?;
        check_runtime(contract, &code, Some(immutables)).map_err(|problem| DeployError::Bytecode {
            contract: contract.name(),
            address,
            chain: role,
            problem,
        })
    }

    async fn deploy_bridge(
        &mut self,
        index: usize,
        role: ChainRole,
    ) -> Result<(Address, u64), DeployError> {
        let request = Bridge::deploy_builder(
            self.chain(role).provider.clone(),
            self.owner,
            self.journal.operators.clone(),
            U256::from(self.journal.threshold),
        )
        .into_transaction_request();
        let (block, contract) = self.run(index, request).await?;
        let address = contract.ok_or_else(|| {
            DeployError::Check(format!("the {role} Bridge deployment created no contract"))
        })?;
        let chain_id = U256::from(self.chain(role).chain_id);
        // The bridge's constructor deploys its extension with its first CREATE: the bridge must
        // point at exactly that one, and its code must be the extension's.
        let extension = address.create(1);
        let extension_word = U256::from_be_bytes(extension.into_word().0);
        self.check_code(
            role,
            Deployable::Bridge,
            address,
            &[("deployChainId", chain_id), ("extension", extension_word)],
        )
        .await?;
        self.check_code(
            role,
            Deployable::BridgeExtension,
            extension,
            &[("deployChainId", chain_id), ("_self", extension_word)],
        )
        .await?;
        let entry = match role {
            ChainRole::Main => &mut self.journal.main,
            ChainRole::Service => &mut self.journal.service,
        };
        entry.bridge = Some(address);
        entry.bridge_block = Some(block);
        self.journal.save(&self.dir)?;
        Ok((address, block))
    }

    async fn set_counterpart(
        &mut self,
        index: usize,
        role: ChainRole,
        bridge: Address,
        other: (u64, Address, u64),
    ) -> Result<(), DeployError> {
        let contract = Bridge::new(bridge, self.chain(role).provider.clone());
        let request = contract
            .setCounterpart(U256::from(other.0), other.1, other.2)
            .into_transaction_request()
            .with_to(bridge);
        self.run(index, request).await?;
        let chain_id = contract
            .counterpartChainId()
            .call()
            .await
            .map_err(|e| rpc("counterpartChainId", role, e))?;
        let counterpart = contract
            .counterpartBridge()
            .call()
            .await
            .map_err(|e| rpc("counterpartBridge", role, e))?;
        if chain_id != U256::from(other.0) || counterpart != other.1 {
            return Err(DeployError::Check(format!(
                "the {role} Bridge names counterpart {counterpart} on chain {chain_id}, expected {} on chain {}",
                other.1, other.0
            )));
        }
        Ok(())
    }
}

/// Check the inputs that need no chain.
fn check_request(request: &DeployRequest) -> Result<(), DeployError> {
    if request.operators.is_empty() {
        return Err(DeployError::Invalid(
            "give at least one --operator (the bridges need operators to vote)".into(),
        ));
    }
    let mut seen = request.operators.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != request.operators.len() {
        return Err(DeployError::Invalid("an --operator is given twice".into()));
    }
    if request.operators.contains(&Address::ZERO) {
        return Err(DeployError::Invalid(
            "--operator 0x0 is not an operator".into(),
        ));
    }
    let n = request.operators.len() as u64;
    if request.threshold == 0 || request.threshold > n {
        return Err(DeployError::Invalid(format!(
            "--threshold {} with {n} operator(s): give 1 to {n} (ThresholdAboveOperators on chain)",
            request.threshold
        )));
    }
    if request.threshold.saturating_mul(2) <= n {
        tracing::warn!(
            threshold = request.threshold,
            operators = n,
            "the threshold is not a majority of the operators"
        );
    }
    Ok(())
}

/// Deploy (or resume deploying) as `owner`; the finished journal.
pub async fn deploy(
    request: &DeployRequest,
    owner: crate::signer::OperatorSigner,
) -> Result<DeploymentJournal, DeployError> {
    check_request(request)?;
    let main = connect(ChainRole::Main, &request.main_rpc, request.main_chain_id).await?;
    let service = connect(
        ChainRole::Service,
        &request.service_rpc,
        request.service_chain_id,
    )
    .await?;
    if main.chain_id == service.chain_id {
        return Err(DeployError::Invalid(format!(
            "both RPCs serve chain {}: a bridge pair joins two different chains",
            main.chain_id
        )));
    }
    if request.raw_owner_key {
        for chain in [&main, &service] {
            if !crate::config::is_devnet_chain(chain.chain_id) {
                return Err(DeployError::Invalid(format!(
                    "a raw owner key (--owner-key-env) is accepted on devnet chains (31337-31413) only, and the {} chain is {}: give --owner-keystore",
                    chain.role, chain.chain_id
                )));
            }
        }
    }
    let owner_address = owner.address();
    let fresh = DeploymentJournal {
        version: JOURNAL_VERSION,
        owner: owner_address,
        operators: request.operators.clone(),
        threshold: request.threshold,
        main: ChainDeployment {
            chain_id: main.chain_id,
            ..Default::default()
        },
        service: ChainDeployment {
            chain_id: service.chain_id,
            ..Default::default()
        },
        steps: planned_steps(),
        complete: false,
    };
    let journal = match DeploymentJournal::load(&request.out)? {
        None => fresh,
        Some(existing) => {
            let differs = if existing.owner != fresh.owner {
                Some("the owner")
            } else if existing.operators != fresh.operators {
                Some("the operators")
            } else if existing.threshold != fresh.threshold {
                Some("the threshold")
            } else if existing.main.chain_id != fresh.main.chain_id
                || existing.service.chain_id != fresh.service.chain_id
            {
                Some("the chains")
            } else {
                None
            };
            if let Some(what) = differs {
                return Err(DeployError::OtherDeployment {
                    dir: request.out.clone(),
                    what: what.to_owned(),
                });
            }
            existing
        }
    };
    let mut deployer = Deployer {
        main,
        service,
        wallet: owner.wallet(),
        owner: owner_address,
        journal,
        dir: request.out.clone(),
    };
    let nothing_sent = deployer
        .journal
        .steps
        .iter()
        .all(|s| s.state == StepState::Planned);
    if nothing_sent {
        for chain in [&deployer.main, &deployer.service] {
            let balance = chain
                .provider
                .get_balance(owner_address)
                .await
                .map_err(|e| rpc("eth_getBalance", chain.role, e))?;
            if balance.is_zero() {
                return Err(DeployError::Unfunded {
                    chain: chain.role,
                    owner: owner_address,
                });
            }
        }
    }
    deployer.journal.save(&deployer.dir)?;
    let (main_bridge, main_block) = deployer.deploy_bridge(0, ChainRole::Main).await?;
    let (service_bridge, service_block) = deployer.deploy_bridge(1, ChainRole::Service).await?;
    let registry_request =
        ServiceRegistry::deploy_builder(deployer.main.provider.clone()).into_transaction_request();
    let (_, registry) = deployer.run(2, registry_request).await?;
    let registry = registry.ok_or_else(|| {
        DeployError::Check("the ServiceRegistry deployment created no contract".into())
    })?;
    deployer
        .check_code(ChainRole::Main, Deployable::ServiceRegistry, registry, &[])
        .await?;
    deployer.journal.main.registry = Some(registry);
    let service_id = deployer.service.chain_id;
    let main_id = deployer.main.chain_id;
    deployer
        .set_counterpart(
            3,
            ChainRole::Main,
            main_bridge,
            (service_id, service_bridge, service_block),
        )
        .await?;
    deployer
        .set_counterpart(
            4,
            ChainRole::Service,
            service_bridge,
            (main_id, main_bridge, main_block),
        )
        .await?;
    deployer.journal.complete = true;
    deployer.journal.save(&deployer.dir)?;
    write_starter_configs(request, &deployer.journal)?;
    Ok(deployer.journal)
}

/// The starter relay config of `operator`: every field from the deployment, its key a keystore
/// the operator puts at `keys/<address>.json`; checked by loading it back.
pub fn starter_config(
    request: &DeployRequest,
    journal: &DeploymentJournal,
    operator: Address,
) -> String {
    let chain = |name: &str, rpc: &str, c: &ChainDeployment| {
        format!(
            "[chains.{name}]\nchain_id = {}\nrpc_urls = [{:?}]\nbridge = \"{}\"\nstart_block = {}\nconfirmations = {}\n\n",
            c.chain_id,
            rpc,
            c.bridge.unwrap_or_default(),
            c.bridge_block.unwrap_or_default(),
            request.confirmations,
        )
    };
    format!(
        "# multibridge relay config for operator {operator}, written by `multibridge deploy`.\n\
         # Put the operator's keystore at the path below, give its password in the variable,\n\
         # then: multibridge config check --config <this file>\n\n\
         [operator]\naddress = \"{operator}\"\nsigner = {{ kind = \"keystore\", path = \"keys/{operator}.json\", password_env = \"MULTIBRIDGE_KEYSTORE_PASSWORD\" }}\n\n\
         {}{}\
         [store]\npath = \"store-{operator}.sqlite\"\n\n\
         [http]\nlisten = \"127.0.0.1:9464\"\n\n\
         [registry]\naddress = \"{}\"\n",
        chain("main", &request.main_rpc, &journal.main),
        chain("service", &request.service_rpc, &journal.service),
        journal.main.registry.unwrap_or_default(),
    )
}

fn write_starter_configs(
    request: &DeployRequest,
    journal: &DeploymentJournal,
) -> Result<(), DeployError> {
    for operator in &journal.operators {
        let path = request.out.join(format!("operator-{operator}.toml"));
        let fail = |message: String| DeployError::StarterConfig {
            path: path.clone(),
            message,
        };
        write_private(
            &path,
            starter_config(request, journal, *operator).as_bytes(),
        )
        .map_err(|e| fail(e.to_string()))?;
        crate::config::Config::load(&path).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Write `bytes` to `path` readable by its owner only (a config holds RPC URLs, which may carry
/// credentials).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(operators: usize, threshold: u64) -> DeployRequest {
        DeployRequest {
            main_rpc: "http://127.0.0.1:1".into(),
            service_rpc: "http://127.0.0.1:2".into(),
            main_chain_id: None,
            service_chain_id: None,
            operators: (1..=operators as u8).map(Address::repeat_byte).collect(),
            threshold,
            out: PathBuf::from("x"),
            confirmations: 12,
            raw_owner_key: false,
        }
    }

    #[test]
    fn inputs_are_refused_before_anything_is_sent() {
        let e = check_request(&request(2, 3)).unwrap_err().to_string();
        assert!(e.contains("--threshold 3 with 2 operator(s)"), "{e}");
        let e = check_request(&request(0, 1)).unwrap_err().to_string();
        assert!(e.contains("at least one --operator"), "{e}");
        let e = check_request(&request(2, 0)).unwrap_err().to_string();
        assert!(e.contains("give 1 to 2"), "{e}");
        let mut twice = request(2, 1);
        twice.operators.push(Address::repeat_byte(1));
        assert!(
            check_request(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(check_request(&request(3, 2)).is_ok());
    }

    #[test]
    fn a_starter_config_loads_as_a_relay_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(1, 1);
        req.out = dir.path().to_owned();
        let journal = DeploymentJournal {
            version: JOURNAL_VERSION,
            owner: Address::repeat_byte(9),
            operators: req.operators.clone(),
            threshold: 1,
            main: ChainDeployment {
                chain_id: 5,
                bridge: Some(Address::repeat_byte(5)),
                bridge_block: Some(10),
                registry: Some(Address::repeat_byte(6)),
            },
            service: ChainDeployment {
                chain_id: 7,
                bridge: Some(Address::repeat_byte(7)),
                bridge_block: Some(20),
                registry: None,
            },
            steps: Vec::new(),
            complete: true,
        };
        write_starter_configs(&req, &journal).unwrap();
        let path = dir
            .path()
            .join(format!("operator-{}.toml", req.operators[0]));
        let config = crate::config::Config::load(&path).unwrap();
        assert_eq!(config.chains.main.bridge, Address::repeat_byte(5));
        assert_eq!(config.chains.service.start_block, 20);
        assert_eq!(config.registry.unwrap().address, Address::repeat_byte(6));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

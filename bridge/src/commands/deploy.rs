//! `multibridge deploy`: a bridge pair and the service registry on two chains (resumable: run it
//! again after a crash), checked against the committed artifacts, with deployment.json and a
//! starter relay config per operator.

use std::path::PathBuf;

/// `multibridge deploy`.
#[derive(clap::Args)]
pub struct Args {
    /// Main chain RPC URL.
    #[arg(long)]
    main_rpc: String,
    /// Service chain RPC URL.
    #[arg(long)]
    service_rpc: String,
    /// The main chain's id (checked against the RPC before anything is sent).
    #[arg(long)]
    main_chain_id: Option<u64>,
    /// The service chain's id (checked against the RPC before anything is sent).
    #[arg(long)]
    service_chain_id: Option<u64>,
    /// An operator address (repeat for each).
    #[arg(long = "operator", required = true)]
    operators: Vec<alloy::primitives::Address>,
    /// Votes needed to execute a transfer (1 to the number of operators).
    #[arg(long)]
    threshold: u64,
    /// Where deployment.json and the starter configs go (and where a deployment resumes from).
    #[arg(long, default_value = "deployment")]
    out: PathBuf,
    /// Confirmation depth written in the starter configs.
    #[arg(long, default_value_t = 12)]
    confirmations: u64,
    /// The owner's (deployer's) JSON keystore.
    #[arg(long, conflicts_with = "owner_key_env")]
    owner_keystore: Option<PathBuf>,
    /// File holding the owner keystore's password.
    #[arg(long)]
    owner_password_file: Option<PathBuf>,
    /// Environment variable holding the owner keystore's password.
    #[arg(long)]
    owner_password_env: Option<String>,
    /// A file holding the owner's signer section (`kind = "pkcs11"`, `"aws-kms"` or
    /// `"keystore"`): an owner key in an HSM or KMS.
    #[arg(long, conflicts_with_all = ["owner_keystore", "owner_key_env"])]
    owner_signer_file: Option<PathBuf>,
    /// Environment variable holding the owner's raw hex key (devnet chains only).
    #[arg(long)]
    owner_key_env: Option<String>,
    /// Print the deployment as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `multibridge deploy`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    use multibridge_admin::deploy::{DeployRequest, deploy};
    let owner: crate::chain::signer::OperatorSigner = match (
        &args.owner_signer_file,
        &args.owner_keystore,
        &args.owner_key_env,
    ) {
        (Some(file), None, None) => crate::chain::signer::open::load_signer_file(file).await?,
        (None, Some(path), None) => {
            let password = crate::chain::signer::open::read_password(
                args.owner_password_file.as_deref(),
                args.owner_password_env.as_deref(),
            )?;
            crate::chain::signer::open::decrypt_keystore(path, &password)?.into()
        }
        (None, None, Some(var)) => std::env::var(var)
            .map_err(|_| anyhow::anyhow!("--owner-key-env {var}: the variable is not set"))?
            .trim()
            .parse::<alloy::signers::local::PrivateKeySigner>()
            .map_err(|_| anyhow::anyhow!("--owner-key-env {var}: not a 32-byte hex private key"))?
            .into(),
        _ => anyhow::bail!(
            "give the owner's key with --owner-keystore FILE (--owner-password-file or --owner-password-env), --owner-signer-file FILE or, on a devnet, --owner-key-env VAR"
        ),
    };
    let request = DeployRequest {
        main_rpc: args.main_rpc,
        service_rpc: args.service_rpc,
        main_chain_id: args.main_chain_id,
        service_chain_id: args.service_chain_id,
        operators: args.operators,
        threshold: args.threshold,
        out: args.out.clone(),
        confirmations: args.confirmations,
        raw_owner_key: args.owner_key_env.is_some(),
    };
    let journal = deploy(&request, owner).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&journal)?);
        return Ok(());
    }
    println!(
        "deployed (owner {}, threshold {} of {}):",
        journal.owner,
        journal.threshold,
        journal.operators.len()
    );
    for (name, c) in [("main", &journal.main), ("service", &journal.service)] {
        println!(
            "  {name:<8} chain {:<8} bridge {} (block {})",
            c.chain_id,
            c.bridge.map(|a| a.to_string()).unwrap_or_default(),
            c.bridge_block.unwrap_or_default()
        );
    }
    println!(
        "  registry {} (main chain)",
        journal
            .main
            .registry
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    println!(
        "  manifest {}",
        multibridge_admin::journal::DeploymentJournal::path(&args.out).display()
    );
    for op in &journal.operators {
        println!(
            "  starter config {}",
            args.out.join(format!("operator-{op}.toml")).display()
        );
    }
    Ok(())
}

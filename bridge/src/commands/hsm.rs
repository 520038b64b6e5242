//! `multibridge hsm`: operator keys in a PKCS#11 token (HSM): create one inside the token, show
//! its address.

use std::path::PathBuf;

use clap::Subcommand;

/// `multibridge hsm …`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: HsmCommand,
}

#[derive(Subcommand)]
enum HsmCommand {
    /// Generate a secp256k1 key pair inside the token (sensitive, never extractable) and print
    /// its address, to register as an operator.
    CreateKey(HsmKeyArgs),
    /// Print the address of a key in the token (nothing is signed).
    Address(HsmKeyArgs),
}

#[derive(clap::Args)]
struct HsmKeyArgs {
    /// The vendor's PKCS#11 module.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: PathBuf,
    /// The token's label.
    #[arg(long)]
    token_label: String,
    /// The key's label (unique in the token).
    #[arg(long)]
    key_label: String,
    /// File whose first line is the user PIN.
    #[arg(long, conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
    /// Variable holding the user PIN.
    #[arg(long, required_unless_present = "pin_file")]
    pin_env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `multibridge hsm …`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let command = args.command;
    use crate::chain::signer::pkcs11::{TokenKey, create_key, key_address};
    let (args, create) = match command {
        HsmCommand::CreateKey(args) => (args, true),
        HsmCommand::Address(args) => (args, false),
    };
    let key = TokenKey {
        module: args.module,
        token_label: args.token_label,
        key_label: args.key_label,
        pin_file: args.pin_file,
        pin_env: args.pin_env,
    };
    let address = tokio::task::spawn_blocking(move || {
        let address = if create {
            create_key(&key)
        } else {
            key_address(&key)
        };
        address.map(|a| (a, key))
    })
    .await??;
    let (address, key) = address;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "address": address,
                "token_label": key.token_label,
                "key_label": key.key_label,
                "created": create,
            })
        );
    } else {
        println!("{address}");
        if create {
            eprintln!(
                "created key {:?} in token {:?}: register {address} as an operator, then use\n  signer = {{ kind = \"pkcs11\", module = \"{}\", token_label = \"{}\", key_label = \"{}\", pin_env = \"...\" }}",
                key.key_label,
                key.token_label,
                key.module.display(),
                key.token_label,
                key.key_label
            );
        }
    }
    Ok(())
}

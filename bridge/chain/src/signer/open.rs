//! The operator's signing key: an encrypted JSON keystore (v3, as geth and foundry write it)
//! unlocked with a password from a file or an environment variable, a key inside a PKCS#11 token
//! or in AWS KMS (see [`crate::signer`]), or — on devnet chains only — a raw hex key. The key
//! never appears in logs, errors or metrics.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;

use crate::config::{Config, SignerConfig};
use crate::signer::{OperatorSigner, SignerError};

/// Chain ids on which a raw hex key, zero confirmations and fault injection are accepted: the
/// anvil/hardhat default and the devnet range. (1337, geth's `--dev` id, is not one: private
/// networks with real value use it too; audit L-9.)
pub use multibridge_config::is_devnet_chain;

/// Why the key could not be loaded. None of these is retryable: the operator must fix something.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keystore file cannot be read.
    #[error("cannot read keystore {path}: {source}")]
    KeystoreUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The keystore is not a v3 JSON keystore.
    #[error("{path} is not a valid JSON keystore (v3): {reason}")]
    KeystoreInvalid {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The password does not open the keystore.
    #[error("wrong password for keystore {path} (the MAC check failed)")]
    WrongPassword {
        /// The file.
        path: PathBuf,
    },
    /// The password file cannot be read.
    #[error("cannot read password file {path}: {source}")]
    PasswordFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The password environment variable is not set.
    #[error("password variable {0} is not set")]
    PasswordEnvMissing(String),
    /// Neither a password file nor a variable was configured.
    #[error("the keystore needs operator.signer.password_file or operator.signer.password_env")]
    NoPassword,
    /// A raw key is configured for a chain that is not a devnet.
    #[error(
        "a raw dev key is only accepted on devnet chains (31337-31413), but chain {0} is configured; use a keystore"
    )]
    DevKeyOnRealChain(u64),
    /// The raw key does not parse.
    #[error("operator.signer.private_key is not a 32-byte hex key")]
    DevKeyInvalid,
    /// The key belongs to another address than `operator.address`.
    #[error("the key is for {actual}, but operator.address is {expected}")]
    AddressMismatch {
        /// Configured.
        expected: Address,
        /// From the key.
        actual: Address,
    },
    /// An HSM or KMS signer could not be set up or did not sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// A key kept in an HSM or KMS where a key in memory is needed (a CLI user key).
    #[error("this command needs a keystore or dev key, not a {0} signer")]
    NotLocal(&'static str),
    /// A signer file that cannot be read or is no `signer` section.
    #[error("signer file {path}: {reason}")]
    SignerFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl KeyError {
    /// Whether loading may succeed later without a person (an HSM or KMS that does not answer
    /// yet).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Signer(e) if e.is_retryable())
    }
}

/// Load the operator's signer as configured, check it is `operator.address`'s key and that it
/// signs (a signature recovering to that address).
pub async fn load_signer(config: &Config) -> Result<OperatorSigner, KeyError> {
    let signer = load_operator_signer(&config.operator.signer, config).await?;
    if signer.address() != config.operator.address {
        return Err(KeyError::AddressMismatch {
            expected: config.operator.address,
            actual: signer.address(),
        });
    }
    signer.probe().await?;
    Ok(signer)
}

/// The signer a file describes: a `signer` section on its own (`kind = "keystore"`,
/// `"pkcs11"` or `"aws-kms"` with the same fields as `[operator.signer]`), checked to sign. How
/// the CLI takes an owner's, pauser's or user's key from an HSM or KMS. A raw dev key is not
/// taken from a file (`--key-env` is for those).
pub async fn load_signer_file(path: &Path) -> Result<OperatorSigner, KeyError> {
    let bad = |reason: String| KeyError::SignerFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let signer: SignerConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let signer = open_signer(&signer, || {
        Err(bad(
            "a raw dev key is not read from a file: use --key-env".into()
        ))
    })
    .await?;
    signer.probe().await?;
    Ok(signer)
}

/// The signer `signer` names, whatever its backend (a raw dev key only when both of `config`'s
/// chains are devnets).
pub async fn load_operator_signer(
    signer: &SignerConfig,
    config: &Config,
) -> Result<OperatorSigner, KeyError> {
    open_signer(signer, || load_key(signer, config)).await
}

/// Open `signer`; a raw dev key comes from `dev_key` (each caller has its own rule for those).
async fn open_signer(
    signer: &SignerConfig,
    dev_key: impl FnOnce() -> Result<PrivateKeySigner, KeyError>,
) -> Result<OperatorSigner, KeyError> {
    Ok(match signer {
        SignerConfig::Keystore {
            path,
            password_file,
            password_env,
        } => OperatorSigner::local(
            open_keystore_apart(path.clone(), password_file.clone(), password_env.clone()).await?,
        ),
        SignerConfig::DevKey { .. } => OperatorSigner::local(dev_key()?),
        SignerConfig::Pkcs11 {
            module,
            token_label,
            key_label,
            pin_file,
            pin_env,
        } => OperatorSigner::pkcs11(
            crate::signer::pkcs11::Pkcs11Signer::open(crate::signer::pkcs11::TokenKey {
                module: module.clone(),
                token_label: token_label.clone(),
                key_label: key_label.clone(),
                pin_file: pin_file.clone(),
                pin_env: pin_env.clone(),
            })
            .await?,
        ),
        SignerConfig::AwsKms {
            key_id,
            region,
            endpoint_url,
        } => OperatorSigner::aws(
            crate::signer::aws::KmsSigner::open(&crate::signer::aws::KmsKey {
                key_id: key_id.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
            })
            .await?,
        ),
    })
}

/// Load the key `signer` names (a raw dev key only when both of `config`'s chains are
/// devnets).
pub fn load_key(signer: &SignerConfig, config: &Config) -> Result<PrivateKeySigner, KeyError> {
    Ok(match signer {
        SignerConfig::Keystore {
            path,
            password_file,
            password_env,
        } => open_keystore(path, password_file, password_env)?,
        SignerConfig::DevKey { private_key } => {
            for chain in [&config.chains.main, &config.chains.service] {
                if !is_devnet_chain(chain.chain_id) {
                    return Err(KeyError::DevKeyOnRealChain(chain.chain_id));
                }
            }
            private_key
                .expose()
                .parse::<PrivateKeySigner>()
                .map_err(|_| KeyError::DevKeyInvalid)?
        }
        SignerConfig::Pkcs11 { .. } => return Err(KeyError::NotLocal("pkcs11")),
        SignerConfig::AwsKms { .. } => return Err(KeyError::NotLocal("aws-kms")),
    })
}

/// Open the keystore at `path` with the password from `password_file` or `password_env`.
fn open_keystore(
    path: &Path,
    password_file: &Option<PathBuf>,
    password_env: &Option<String>,
) -> Result<PrivateKeySigner, KeyError> {
    let password = read_password(password_file.as_deref(), password_env.as_deref())?;
    decrypt_keystore(path, &password)
}

/// [`open_keystore`] on the blocking pool, one keystore at a time in the process: its scrypt
/// takes about a second and 256 MiB with standard settings, and a hub opens a key for each of
/// its pairs, whose starts run as tasks on the runtime's workers. A keystore this process
/// opened already — the same file contents with the same password, as every pair of a hub
/// names — is not decrypted again ([`OpenedKeystores`]): a hub of 64 pairs paid its scrypt 64
/// times, one after the other, before its last pair could sign.
async fn open_keystore_apart(
    path: PathBuf,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
) -> Result<PrivateKeySigner, KeyError> {
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _turn = ONE_AT_A_TIME
        .acquire()
        .await
        .expect("a static semaphore is never closed");
    let password = read_password(password_file.as_deref(), password_env.as_deref())?;
    let contents = std::fs::read(&path).map_err(|source| KeyError::KeystoreUnreadable {
        path: path.clone(),
        source,
    })?;
    let id = OpenedKeystores::id(&contents, &password);
    let reused = OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .reuse(id);
    if let Some(signer) = reused {
        tracing::debug!(path = %path.display(), "keystore opened before in this process: not decrypted again");
        return Ok(signer);
    }
    let inputs = (path.clone(), password);
    let signer =
        match tokio::task::spawn_blocking(move || decrypt_keystore(&inputs.0, &inputs.1)).await {
            Ok(opened) => opened?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: open it here, as before.
            Err(_) => open_keystore(&path, &password_file, &password_env)?,
        };
    OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id, signer.clone());
    Ok(signer)
}

/// The keystores this process decrypted ([`open_keystore_apart`]).
static OPENED: std::sync::LazyLock<std::sync::Mutex<OpenedKeystores>> =
    std::sync::LazyLock::new(Default::default);

/// The keystores a process decrypted, by what opened them: the keccak of the file's contents
/// and the password together (neither is kept; a changed file or another password is another
/// entry), each with how often it was reused. Holds the keys the process's signers hold anyway.
#[derive(Default)]
struct OpenedKeystores(std::collections::HashMap<alloy::primitives::B256, (PrivateKeySigner, u64)>);

impl OpenedKeystores {
    /// What identifies one opening: the file's contents and the password, length-prefixed so no
    /// two different pairs of them hash the same input.
    fn id(contents: &[u8], password: &str) -> alloy::primitives::B256 {
        let mut input = Vec::with_capacity(
            contents
                .len()
                .saturating_add(password.len())
                .saturating_add(16),
        );
        input.extend_from_slice(&(contents.len() as u64).to_be_bytes());
        input.extend_from_slice(contents);
        input.extend_from_slice(&(password.len() as u64).to_be_bytes());
        input.extend_from_slice(password.as_bytes());
        alloy::primitives::keccak256(&input)
    }

    /// The key opened as `id` before, counted as reused.
    fn reuse(&mut self, id: alloy::primitives::B256) -> Option<PrivateKeySigner> {
        let (signer, reused) = self.0.get_mut(&id)?;
        *reused = reused.saturating_add(1);
        Some(signer.clone())
    }

    fn insert(&mut self, id: alloy::primitives::B256, signer: PrivateKeySigner) {
        self.0.insert(id, (signer, 0));
    }
}

/// The password of a keystore: the first line of `file`, else the variable `env`.
pub fn read_password(file: Option<&Path>, env: Option<&str>) -> Result<String, KeyError> {
    use crate::config::SecretError;
    crate::config::read_secret(file, env).map_err(|e| match e {
        SecretError::FileUnreadable { path, source } => {
            KeyError::PasswordFileUnreadable { path, source }
        }
        SecretError::EnvMissing(var) => KeyError::PasswordEnvMissing(var),
        SecretError::NotConfigured => KeyError::NoPassword,
    })
}

/// Open a v3 keystore; a wrong password is named as such.
pub fn decrypt_keystore(path: &Path, password: &str) -> Result<PrivateKeySigner, KeyError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(KeyError::KeystoreUnreadable {
            path: path.to_owned(),
            source,
        });
    }
    PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
        let text = e.to_string();
        if text.to_ascii_lowercase().contains("mac mismatch") {
            KeyError::WrongPassword {
                path: path.to_owned(),
            }
        } else {
            KeyError::KeystoreInvalid {
                path: path.to_owned(),
                reason: text,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// The async loader, driven to completion (these keys sign at once, without I/O).
    fn load_signer(config: &Config) -> Result<OperatorSigner, KeyError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(super::load_signer(config))
    }

    const DEV_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn config_with(signer: SignerConfig, address: Address, chain_ids: (u64, u64)) -> Config {
        let text = format!(
            r#"
            [operator]
            address = "{address}"
            signer = {{ kind = "dev-key", private_key = "0x00" }}
            [chains.main]
            chain_id = {}
            rpc_urls = ["http://127.0.0.1:1"]
            bridge = "0x0000000000000000000000000000000000000001"
            [chains.service]
            chain_id = {}
            rpc_urls = ["http://127.0.0.1:2"]
            bridge = "0x0000000000000000000000000000000000000002"
            [store]
            path = "/tmp/unused.sqlite"
            [http]
            listen = "127.0.0.1:0"
            "#,
            chain_ids.0, chain_ids.1
        );
        let mut config: Config = toml::from_str(&text).unwrap();
        config.operator.signer = signer;
        config
    }

    fn dev_address() -> Address {
        DEV_KEY.parse::<PrivateKeySigner>().unwrap().address()
    }

    #[test]
    fn dev_key_only_on_devnet_chains_and_for_the_configured_address() {
        let dev = SignerConfig::DevKey {
            private_key: Secret::new(DEV_KEY),
        };
        let ok = load_signer(&config_with(dev.clone(), dev_address(), (31_337, 31_338))).unwrap();
        assert_eq!(ok.address(), dev_address());
        let err = load_signer(&config_with(dev.clone(), dev_address(), (1, 31_338))).unwrap_err();
        assert!(matches!(err, KeyError::DevKeyOnRealChain(1)), "{err}");
        // Audit L-9: geth's --dev id is used by private networks with real value.
        let err =
            load_signer(&config_with(dev.clone(), dev_address(), (1_337, 31_338))).unwrap_err();
        assert!(matches!(err, KeyError::DevKeyOnRealChain(1_337)), "{err}");
        let err =
            load_signer(&config_with(dev, Address::repeat_byte(7), (31_337, 31_338))).unwrap_err();
        assert!(matches!(err, KeyError::AddressMismatch { .. }), "{err}");
        // The key never shows in messages or debug output.
        let cfg = config_with(
            SignerConfig::DevKey {
                private_key: Secret::new(DEV_KEY),
            },
            dev_address(),
            (31_337, 31_338),
        );
        assert!(!format!("{cfg:?}").contains(&DEV_KEY[2..]));
    }

    /// `DEV_KEY` in a keystore `operator.json` under `dir` locked with `password`, and a file
    /// `password` holding it: the key's signer and both paths.
    fn keystore_in(dir: &Path, password: &str) -> (PrivateKeySigner, PathBuf, PathBuf) {
        let (signer, _uuid) = PrivateKeySigner::encrypt_keystore(
            dir,
            &mut rand08::thread_rng(),
            alloy::hex::decode(&DEV_KEY[2..]).unwrap(),
            password,
            Some("operator.json"),
        )
        .unwrap();
        let password_file = dir.join("password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        (signer, dir.join("operator.json"), password_file)
    }

    #[test]
    fn a_keystore_that_many_pairs_name_is_decrypted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, path, password_file) = keystore_in(dir.path(), "one for all");
        let config = config_with(
            SignerConfig::Keystore {
                path: path.clone(),
                password_file: Some(password_file),
                password_env: None,
            },
            signer.address(),
            (1, 2),
        );
        // Eight pairs of a hub start at once on a runtime of two workers.
        let opened = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(futures::future::join_all(
                (0..8).map(|_| super::load_signer(&config)),
            ));
        for signer_of_a_pair in opened {
            assert_eq!(signer_of_a_pair.unwrap().address(), signer.address());
        }
        let id = OpenedKeystores::id(&std::fs::read(&path).unwrap(), "one for all");
        let reused = OPENED.lock().unwrap().0.get(&id).map(|(_, reused)| *reused);
        assert_eq!(reused, Some(7), "one decryption, seven reuses");
        // Another password for the same file is not answered from the first opening.
        assert_ne!(
            OpenedKeystores::id(&std::fs::read(&path).unwrap(), "one for al"),
            id
        );
    }

    #[test]
    fn keystore_opens_with_the_right_password_and_names_the_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, path, password_file) = keystore_in(dir.path(), "correct horse");
        let keystore = |password_file: PathBuf| SignerConfig::Keystore {
            path: path.clone(),
            password_file: Some(password_file),
            password_env: None,
        };
        // A keystore works on any chain.
        let ok = load_signer(&config_with(
            keystore(password_file.clone()),
            signer.address(),
            (1, 2),
        ))
        .unwrap();
        assert_eq!(ok.address(), signer.address());

        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, "battery staple\n").unwrap();
        let err = load_signer(&config_with(keystore(wrong), signer.address(), (1, 2))).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassword { .. }), "{err}");
        assert!(err.to_string().contains("wrong password"));

        let err = load_signer(&config_with(
            keystore(dir.path().join("absent")),
            signer.address(),
            (1, 2),
        ))
        .unwrap_err();
        assert!(
            matches!(err, KeyError::PasswordFileUnreadable { .. }),
            "{err}"
        );

        let missing_env = SignerConfig::Keystore {
            path: path.clone(),
            password_file: None,
            password_env: Some("MULTIBRIDGE_TEST_SURELY_UNSET_PASSWORD".into()),
        };
        let err = load_signer(&config_with(missing_env, signer.address(), (1, 2))).unwrap_err();
        assert!(matches!(err, KeyError::PasswordEnvMissing(_)), "{err}");

        std::fs::write(&path, "{not json").unwrap();
        let err = load_signer(&config_with(
            keystore(password_file),
            signer.address(),
            (1, 2),
        ))
        .unwrap_err();
        assert!(matches!(err, KeyError::KeystoreInvalid { .. }), "{err}");
    }
}

//! A SoftHSM2 token for the devnet's operator keys (`multibridge-devnet up --signer hsm`): one
//! token in `<dir>/softhsm/`, one secp256k1 key per operator generated inside it by the real CLI
//! (`multibridge hsm create-key`), and the relays sign through PKCS#11. The token can be made
//! unavailable and available again (its directory moved away and back), as an unplugged HSM.
//!
//! DEVNET ONLY: the token's PINs are well known (`DEVNET_HSM_PIN`, written to `<dir>/hsm-pin`).

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy::primitives::Address;
use multibridge_config::SignerConfig;

use crate::error::DevnetError;
use crate::harness::tools::relay_binary;

/// DEVNET ONLY, well known: the user PIN of the devnet's SoftHSM token.
pub const DEVNET_HSM_PIN: &str = "devnet-hsm-pin";
/// DEVNET ONLY, well known: its security officer PIN.
const DEVNET_HSM_SO_PIN: &str = "devnet-hsm-so-pin";
/// The token's label.
pub const TOKEN_LABEL: &str = "multibridge-devnet";
/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The devnet's token.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    dir: PathBuf,
}

impl SoftHsm {
    /// A fresh token in `<devnet dir>/softhsm` (a previous one there is removed).
    pub fn create(devnet_dir: &Path) -> Result<Self, DevnetError> {
        let dir = devnet_dir.join("softhsm");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| DevnetError::io(&dir, e))?;
        }
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| DevnetError::io(&tokens, e))?;
        let hsm = Self { dir };
        let conf = hsm.conf();
        write_conf(&conf, &tokens)?;
        let pin = hsm.pin_file();
        std::fs::write(&pin, format!("{DEVNET_HSM_PIN}\n"))
            .map_err(|e| DevnetError::io(&pin, e))?;
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--so-pin", DEVNET_HSM_SO_PIN, "--pin", DEVNET_HSM_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .map_err(|e| {
                DevnetError::Invalid(format!("softhsm2-util (run .tools/setup.sh): {e}"))
            })?;
        if !out.status.success() {
            return Err(DevnetError::Invalid(format!(
                "softhsm2-util --init-token: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(hsm)
    }

    /// The token's configuration file (`SOFTHSM2_CONF` of every process that opens it).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// The file holding the user PIN.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.join("hsm-pin")
    }

    /// The environment a process needs to find the token.
    pub fn env(&self) -> (String, String) {
        ("SOFTHSM2_CONF".into(), self.conf().display().to_string())
    }

    /// The label of operator `index`'s key.
    pub fn key_label(index: usize) -> String {
        format!("operator-{}", index.saturating_add(1))
    }

    /// Generate operator `index`'s key inside the token with the real CLI; its address.
    pub fn create_key(&self, index: usize) -> Result<Address, DevnetError> {
        let out = Command::new(relay_binary()?)
            .args(["hsm", "create-key", "--module", SOFTHSM_MODULE])
            .args(["--token-label", TOKEN_LABEL, "--key-label"])
            .arg(Self::key_label(index))
            .arg("--pin-file")
            .arg(self.pin_file())
            .arg("--json")
            .env("SOFTHSM2_CONF", self.conf())
            .env("MULTIBRIDGE_LOG", "off")
            .output()
            .map_err(|e| DevnetError::Invalid(format!("multibridge hsm create-key: {e}")))?;
        if !out.status.success() {
            return Err(DevnetError::Invalid(format!(
                "multibridge hsm create-key: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let created: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| DevnetError::Invalid(format!("hsm create-key printed no JSON: {e}")))?;
        created["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| DevnetError::Invalid(format!("hsm create-key: no address in {created}")))
    }

    /// The relay's `signer` section for operator `index`'s key.
    pub fn signer_config(&self, index: usize) -> SignerConfig {
        SignerConfig::Pkcs11 {
            module: SOFTHSM_MODULE.into(),
            token_label: TOKEN_LABEL.into(),
            key_label: Self::key_label(index),
            pin_file: Some(self.pin_file()),
            pin_env: None,
        }
    }

    fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    fn tokens_away(&self) -> PathBuf {
        self.dir.join("tokens.unplugged")
    }

    /// A second HSM holding the same keys: the token copied to `<dir>/tokens`, with its own
    /// configuration file, whose path is returned (`SOFTHSM2_CONF` of a process that should sign
    /// through it, e.g. a standby whose signer must stay up while this one is unplugged).
    ///
    /// The relays using the token may be rewriting its files while they are copied (a
    /// standby once found no token in its copy, 2026-11-27): the copy is made again until
    /// SoftHSM lists the token in it.
    pub fn second_token(&self, dir: &Path) -> Result<PathBuf, DevnetError> {
        let tokens = dir.join("tokens");
        let conf = dir.join("softhsm2.conf");
        std::fs::create_dir_all(dir).map_err(|e| DevnetError::io(dir, e))?;
        write_conf(&conf, &tokens)?;
        let mut listed = String::new();
        for copy in 1..=20 {
            if copy > 1 {
                eprintln!(
                    "the token's copy {} was not listed by SoftHSM: copying again",
                    copy - 1
                );
            }
            if tokens.exists() {
                std::fs::remove_dir_all(&tokens).map_err(|e| DevnetError::io(&tokens, e))?;
            }
            copy_tree(&self.tokens(), &tokens)?;
            let out = Command::new("softhsm2-util")
                .arg("--show-slots")
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .map_err(|e| {
                    DevnetError::Invalid(format!("softhsm2-util (run .tools/setup.sh): {e}"))
                })?;
            listed = String::from_utf8_lossy(&out.stdout).into_owned();
            if listed.contains(TOKEN_LABEL) {
                return Ok(conf);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(DevnetError::Invalid(format!(
            "the copied token is not listed by SoftHSM after 20 copies: {listed}"
        )))
    }

    /// Make the token unavailable, as if the HSM were unplugged: its directory is moved away,
    /// so every open of it and every use of its objects fails.
    pub fn unplug(&self) -> Result<(), DevnetError> {
        std::fs::rename(self.tokens(), self.tokens_away())
            .map_err(|e| DevnetError::io(self.tokens(), e))
    }

    /// Put the token back.
    pub fn plug_in(&self) -> Result<(), DevnetError> {
        std::fs::rename(self.tokens_away(), self.tokens())
            .map_err(|e| DevnetError::io(self.tokens_away(), e))
    }
}

/// A SoftHSM2 configuration file at `conf` for the tokens in `tokens`.
fn write_conf(conf: &Path, tokens: &Path) -> Result<(), DevnetError> {
    std::fs::write(
        conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .map_err(|e| DevnetError::io(conf, e))
}

/// Copy the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), DevnetError> {
    std::fs::create_dir_all(to).map_err(|e| DevnetError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| DevnetError::io(from, e))? {
        let entry = entry.map_err(|e| DevnetError::io(from, e))?;
        let target = to.join(entry.file_name());
        let is_dir = entry
            .file_type()
            .map_err(|e| DevnetError::io(entry.path(), e))?
            .is_dir();
        if is_dir {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| DevnetError::io(&target, e))?;
        }
    }
    Ok(())
}

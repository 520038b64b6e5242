//! A secp256k1 key inside a PKCS#11 token (an HSM; SoftHSM2 in the tests), found by label. The
//! key is generated in the token as sensitive and not extractable ([`create_key`]); the relay only
//! ever asks the token for `CKM_ECDSA` signatures of 32-byte hashes, turns them into Ethereum
//! signatures (low `s`, the recovery bit found by recovery) and never sees the key.
//!
//! The token is opened lazily and kept open; any failure drops the session and the library
//! handle, so the next signature reconnects from scratch — a token that was removed and put back
//! (or a PIN file that was fixed) is picked up without a restart. Calls run on blocking threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256, Signature};
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use super::{SignerError, address_of_point};
use crate::config::read_secret;

const BACKEND: &str = "pkcs11";

/// DER of the secp256k1 curve's object identifier (1.3.132.0.10), the `CKA_EC_PARAMS` of its keys.
const SECP256K1_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// Where the key is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The key's label (`CKA_LABEL` of both halves).
    pub key_label: String,
    /// File whose first line is the user PIN.
    pub pin_file: Option<PathBuf>,
    /// Variable holding the user PIN.
    pub pin_env: Option<String>,
}

/// An open token: the library, a logged-in session and the private key's handle.
struct Open {
    // Kept for the session's lifetime: dropping the last handle finalizes the library.
    _library: Pkcs11,
    session: Session,
    key: ObjectHandle,
}

/// The signer of one token key.
#[derive(Clone)]
pub struct Pkcs11Signer {
    key: TokenKey,
    address: Address,
    open: Arc<Mutex<Option<Open>>>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("token", &self.key.token_label)
            .field("key", &self.key.key_label)
            .field("address", &self.address)
            .finish()
    }
}

fn setup(reason: impl std::fmt::Display) -> SignerError {
    SignerError::Setup {
        backend: BACKEND,
        reason: reason.to_string(),
    }
}

fn unavailable(reason: impl std::fmt::Display) -> SignerError {
    SignerError::Unavailable {
        backend: BACKEND,
        reason: reason.to_string(),
    }
}

/// Load the module and log in to the token labelled `token_label`.
fn login(key: &TokenKey) -> Result<(Pkcs11, Session), SignerError> {
    let library = Pkcs11::new(&key.module)
        .map_err(|e| setup(format!("cannot load module {}: {e}", key.module.display())))?;
    library
        .initialize(CInitializeArgs::OsThreads)
        .map_err(unavailable)?;
    let slot = library
        .get_slots_with_token()
        .map_err(unavailable)?
        .into_iter()
        .find(|slot| {
            library
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == key.token_label)
        })
        .ok_or_else(|| unavailable(format!("no token labelled {:?}", key.token_label)))?;
    let session = library.open_rw_session(slot).map_err(unavailable)?;
    let pin = read_secret(key.pin_file.as_deref(), key.pin_env.as_deref())
        .map_err(|e| setup(format!("the PIN: {e}")))?;
    session
        .login(UserType::User, Some(&AuthPin::new(pin)))
        .map_err(|e| unavailable(format!("login: {e}")))?;
    Ok((library, session))
}

/// The one object of `class` labelled `label`.
fn find(session: &Session, class: ObjectClass, label: &str) -> Result<ObjectHandle, SignerError> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(unavailable)?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(unavailable(format!("no {class} labelled {label:?}"))),
        _ => Err(setup(format!(
            "{} objects of class {class} are labelled {label:?}: labels must be unique",
            found.len()
        ))),
    }
}

/// The address of the public key labelled `label`.
fn public_address(session: &Session, label: &str) -> Result<Address, SignerError> {
    let handle = find(session, ObjectClass::PUBLIC_KEY, label)?;
    let attributes = session
        .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(unavailable)?;
    let mut point = None;
    for attribute in attributes {
        match attribute {
            Attribute::EcParams(params) if params != SECP256K1_PARAMS => {
                return Err(setup(format!(
                    "key {label:?} is not on secp256k1 (CKA_EC_PARAMS {})",
                    alloy::hex::encode(params)
                )));
            }
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let point = point.ok_or_else(|| setup(format!("key {label:?} has no CKA_EC_POINT")))?;
    // Most modules wrap the point in a DER OCTET STRING (04 41 ...); some give it bare.
    let bare = match point.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        other => other,
    };
    address_of_point(bare).ok_or_else(|| {
        setup(format!(
            "key {label:?}: CKA_EC_POINT is not an uncompressed point"
        ))
    })
}

impl Pkcs11Signer {
    /// Open the token, find the key and read its address (blocking: call it off the runtime's
    /// threads, or through [`Pkcs11Signer::open`]).
    pub fn open_blocking(key: TokenKey) -> Result<Self, SignerError> {
        let (library, session) = login(&key)?;
        let address = public_address(&session, &key.key_label)?;
        let private = find(&session, ObjectClass::PRIVATE_KEY, &key.key_label)?;
        Ok(Self {
            key,
            address,
            open: Arc::new(Mutex::new(Some(Open {
                _library: library,
                session,
                key: private,
            }))),
        })
    }

    /// [`Pkcs11Signer::open_blocking`] on a blocking thread.
    pub async fn open(key: TokenKey) -> Result<Self, SignerError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(key))
            .await
            .map_err(|e| unavailable(format!("the signing thread failed: {e}")))?
    }

    /// The key's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Sign `hash` in the token.
    pub async fn sign_hash(&self, hash: B256) -> Result<Signature, SignerError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sign_blocking(&hash))
            .await
            .map_err(|e| unavailable(format!("the signing thread failed: {e}")))?
    }

    fn sign_blocking(&self, hash: &B256) -> Result<Signature, SignerError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_none() {
            let (library, session) = login(&self.key)?;
            let key = find(&session, ObjectClass::PRIVATE_KEY, &self.key.key_label)?;
            *open = Some(Open {
                _library: library,
                session,
                key,
            });
        }
        let Some(token) = open.as_ref() else {
            return Err(unavailable("the token is not open"));
        };
        match token
            .session
            .sign(&Mechanism::Ecdsa, token.key, hash.as_slice())
        {
            Ok(raw) => ethereum_signature(&raw, hash, self.address),
            Err(e) => {
                // Whatever went wrong, the next signature starts from a fresh library handle.
                *open = None;
                Err(unavailable(format!("sign: {e}")))
            }
        }
    }
}

/// An Ethereum signature from a token's raw `r || s`: `s` made low (EIP-2) and the recovery bit
/// found by recovering to `address`.
pub fn ethereum_signature(
    raw: &[u8],
    hash: &B256,
    address: Address,
) -> Result<Signature, SignerError> {
    let signature = k256::ecdsa::Signature::from_slice(raw).map_err(|e| {
        unavailable(format!(
            "the token returned {} bytes that are no signature: {e}",
            raw.len()
        ))
    })?;
    let signature = signature.normalize_s().unwrap_or(signature);
    for parity in [false, true] {
        let candidate = Signature::from_signature_and_parity(signature, parity);
        if candidate.recover_address_from_prehash(hash).ok() == Some(address) {
            return Ok(candidate);
        }
    }
    Err(SignerError::BadSignature {
        backend: BACKEND,
        expected: address,
        actual: Address::ZERO,
    })
}

/// Generate a secp256k1 key pair labelled `key.key_label` inside the token: the private half
/// sensitive and never extractable, both halves stored on the token. Refuses a label already
/// used. Returns the key's address (to register as an operator). Blocking.
pub fn create_key(key: &TokenKey) -> Result<Address, SignerError> {
    let (_library, session) = login(key)?;
    let label = key.key_label.as_bytes().to_vec();
    let taken = session
        .find_objects(&[Attribute::Label(label.clone())])
        .map_err(unavailable)?;
    if !taken.is_empty() {
        return Err(setup(format!(
            "the token already holds an object labelled {:?}",
            key.key_label
        )));
    }
    let id = alloy::primitives::keccak256(&label)[..8].to_vec();
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(SECP256K1_PARAMS.to_vec()),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .map_err(|e| unavailable(format!("generate: {e}")))?;
    public_address(&session, &key.key_label)
}

/// The address of the key labelled `key.key_label` (nothing is signed). Blocking.
pub fn key_address(key: &TokenKey) -> Result<Address, SignerError> {
    let (_library, session) = login(key)?;
    public_address(&session, &key.key_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;

    #[test]
    fn a_raw_high_s_signature_becomes_a_recoverable_low_s_one() {
        let key = PrivateKeySigner::random();
        let hash = alloy::primitives::keccak256(b"vote");
        let (sig, _) = key
            .credential()
            .sign_prehash_recoverable(hash.as_slice())
            .unwrap();
        // The same signature with s flipped to the high half, as a token may return it.
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        for raw in [sig.to_bytes(), high.to_bytes()] {
            let out = ethereum_signature(&raw, &hash, key.address()).unwrap();
            assert_eq!(
                out.recover_address_from_prehash(&hash).unwrap(),
                key.address()
            );
            assert!(out.normalize_s().is_none(), "s is low");
        }
        assert!(matches!(
            ethereum_signature(&sig.to_bytes(), &hash, Address::repeat_byte(1)),
            Err(SignerError::BadSignature { .. })
        ));
        assert!(matches!(
            ethereum_signature(&[0u8; 10], &hash, key.address()),
            Err(SignerError::Unavailable { .. })
        ));
    }
}

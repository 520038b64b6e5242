//! ECIES over secp256k1 for the encrypted state-backup log (issue 15; seed 003's "encrypted
//! state-backup log"), in the construction the eciesjs / eciespy / ecies-rs family uses by
//! default, so a log this relay writes opens with any of them and theirs open here:
//!
//! - an ephemeral key pair; the shared point `ephemeral_secret × receiver_public`;
//! - key = HKDF-SHA256(ikm = ephemeral_public ‖ shared_point, no salt, no info), 32 bytes, both
//!   points uncompressed (65 bytes);
//! - AES-256-GCM with a random 16-byte nonce;
//! - output = ephemeral_public (65) ‖ nonce (16) ‖ tag (16) ‖ ciphertext.
//!
//! The backup key pair is its own (never the operator's signing key): the public key sits in
//! the relay's config, the secret key only where a backup is restored.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use k256::elliptic_curve::rand_core::CryptoRngCore;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{PublicKey, SecretKey};

/// AES-256-GCM with the 16-byte nonce of the construction.
type Cipher = AesGcm<Aes256, U16>;

const POINT: usize = 65;
const NONCE: usize = 16;
const TAG: usize = 16;

/// Why a message could not be encrypted or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EciesError {
    /// Shorter than the ephemeral key, nonce and tag.
    #[error("ECIES message too short: {0} bytes")]
    TooShort(usize),
    /// The ephemeral public key is not a point of secp256k1.
    #[error("ECIES message carries no valid ephemeral public key")]
    BadEphemeralKey,
    /// The tag does not match: another key, or the message was changed.
    #[error("ECIES message does not open with this key (wrong key or altered message)")]
    Unauthentic,
}

/// The AES key both sides derive.
fn shared_key(ephemeral_public: &[u8], shared_point: &[u8]) -> [u8; 32] {
    let mut ikm = Vec::with_capacity(ephemeral_public.len().saturating_add(shared_point.len()));
    ikm.extend_from_slice(ephemeral_public);
    ikm.extend_from_slice(shared_point);
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, &ikm)
        .expand(&[], &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

/// `secret × public`, uncompressed.
#[allow(clippy::arithmetic_side_effects)] // elliptic-curve scalar multiplication: no integer overflow
fn multiply(secret: &SecretKey, public: &PublicKey) -> Vec<u8> {
    let point = (public.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    point.to_encoded_point(false).as_bytes().to_vec()
}

/// Encrypt `plaintext` to `receiver`.
pub fn encrypt(receiver: &PublicKey, plaintext: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
    let ephemeral = SecretKey::random(rng);
    let ephemeral_public = ephemeral.public_key().to_encoded_point(false);
    let key = shared_key(ephemeral_public.as_bytes(), &multiply(&ephemeral, receiver));
    let mut nonce = [0u8; NONCE];
    rng.fill_bytes(&mut nonce);
    let sealed = Cipher::new(&key.into())
        .encrypt(&Nonce::<U16>::from(nonce), plaintext)
        .expect("AES-GCM encrypts any message below 64 GiB");
    // aes-gcm appends the tag; the construction puts it before the ciphertext.
    let (ciphertext, tag) = sealed.split_at(sealed.len().saturating_sub(TAG));
    let mut out = Vec::with_capacity(ciphertext.len().saturating_add(POINT + NONCE + TAG));
    out.extend_from_slice(ephemeral_public.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(tag);
    out.extend_from_slice(ciphertext);
    out
}

/// Open a message encrypted to the public key of `secret`.
pub fn decrypt(secret: &SecretKey, message: &[u8]) -> Result<Vec<u8>, EciesError> {
    if message.len() < POINT + NONCE + TAG {
        return Err(EciesError::TooShort(message.len()));
    }
    let (ephemeral_public, rest) = message.split_at(POINT);
    let (nonce, rest) = rest.split_at(NONCE);
    let (tag, ciphertext) = rest.split_at(TAG);
    let ephemeral =
        PublicKey::from_sec1_bytes(ephemeral_public).map_err(|_| EciesError::BadEphemeralKey)?;
    let key = shared_key(ephemeral_public, &multiply(secret, &ephemeral));
    let mut sealed = Vec::with_capacity(ciphertext.len().saturating_add(TAG));
    sealed.extend_from_slice(ciphertext);
    sealed.extend_from_slice(tag);
    let nonce: [u8; NONCE] = nonce
        .try_into()
        .map_err(|_| EciesError::TooShort(message.len()))?;
    Cipher::new(&key.into())
        .decrypt(&Nonce::<U16>::from(nonce), sealed.as_slice())
        .map_err(|_| EciesError::Unauthentic)
}

/// A fresh random 16-byte value from `rng` (used by tests of the format).
#[cfg(test)]
fn random_bytes(rng: &mut impl k256::elliptic_curve::rand_core::RngCore) -> [u8; 16] {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use k256::elliptic_curve::rand_core::OsRng;

    use super::*;

    #[test]
    fn a_message_opens_with_its_key_only_and_not_once_altered() {
        let secret = SecretKey::random(&mut OsRng);
        let message = b"backup log: version 7, snapshot sha256 ...".to_vec();
        let sealed = encrypt(&secret.public_key(), &message, &mut OsRng);
        assert_eq!(sealed.len(), POINT + NONCE + TAG + message.len());
        assert_eq!(decrypt(&secret, &sealed).unwrap(), message);
        let other = SecretKey::random(&mut OsRng);
        assert_eq!(decrypt(&other, &sealed), Err(EciesError::Unauthentic));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(decrypt(&secret, &altered), Err(EciesError::Unauthentic));
        assert_eq!(
            decrypt(&secret, &sealed[..40]),
            Err(EciesError::TooShort(40))
        );
        let mut bad_point = sealed;
        bad_point[1..17].copy_from_slice(&random_bytes(&mut OsRng));
        assert!(decrypt(&secret, &bad_point).is_err());
    }
}

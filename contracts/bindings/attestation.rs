//! Attested batches (`Bridge.executeAttested`): which requests form a batch, the EIP-712 digest
//! operators sign for it, and the signature bytes the bridge takes.
//!
//! A batch is a run of at most [`ATTESTED_BATCH`] requests of one source block, or of an
//! aligned pair of blocks when the pair's first block holds a few ([`PAIR_FROM`] to
//! [`PAIR_BELOW`]: [`batch_blocks`]): the blocks' requests in nonce order, cut into runs of
//! [`ATTESTED_BATCH`] from the first ([`batch_run`]). Every operator computes the same batches
//! from the same confirmed blocks, so their signatures are over the same digest without any
//! coordination; a block with many requests gives full batches, quiet ones give a batch of
//! what two blocks hold.

use alloy::primitives::{Address, B256, Bytes, Signature, U256, keccak256};
use alloy::sol_types::SolValue;

use crate::request::{Request, VoteDomain};

/// Most requests in one attested batch (the bridge takes 64; 32 fills blocks better, as for
/// votes). Part of the protocol: every operator must use the same value.
pub const ATTESTED_BATCH: u64 = 32;

/// secp256k1's group order / 2: the bridge refuses an s above it.
const HALF_ORDER: U256 = U256::from_be_slice(&[
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

/// A source block holding [`PAIR_FROM`] or more, and fewer than this, requests shares its
/// attested batch with the next block of its aligned pair (blocks 2k and 2k + 1):
/// what a batch pays once (its transaction, signatures and the state every batch touches, ~80k
/// gas) is then spread over the requests of two blocks (issue 54: at 4 transfers/s a one-block
/// batch carried 3.7, a pair 6.6). The first block's requests wait one block more for it; a
/// busy block (this many or more) goes alone, without that wait. Part of the protocol: every
/// operator must use the same values.
pub const PAIR_BELOW: usize = 8;

/// A block with fewer requests than this goes alone: a lone transfer (a quiet
/// lane) is not held a block for a partner that seldom comes.
pub const PAIR_FROM: usize = 2;

/// The source blocks (first, last) whose requests are cut into the attested batches of a
/// request in source block `block`, given how many requests the first (even) block of
/// `block`'s aligned pair holds.
pub fn batch_blocks(block: u64, pair_first_count: usize) -> (u64, u64) {
    let first = block & !1;
    if !(PAIR_FROM..PAIR_BELOW).contains(&pair_first_count) {
        (block, block)
    } else {
        (first, first.saturating_add(1))
    }
}

/// Nonces per window of the bridge's attested record (`Bridge.attestedRecord`).
pub const RECORD_WINDOW: u64 = 256;

/// The bridge's attested record of a window after `record` with the execution of (`nonce`,
/// `key`) next: `keccak256(abi.encode(record, nonce, key))`, from zero.
pub fn attested_link(record: B256, nonce: u64, key: B256) -> B256 {
    keccak256((record, U256::from(nonce), key).abi_encode_params())
}

/// The nonces `[start, end)` of the batch of `nonce` among its blocks' requests, the nonces
/// `first..=last` (dense: a block's requests are consecutive nonces): runs of
/// [`ATTESTED_BATCH`] from `first` (issue 54: aligned windows of 32 nonces cut a pair's
/// batch in two about one time in five).
pub fn batch_run(first: u64, last: u64, nonce: u64) -> (u64, u64) {
    let offset = nonce.saturating_sub(first);
    let start = first
        .saturating_add(offset.saturating_sub(offset.checked_rem(ATTESTED_BATCH).unwrap_or(0)));
    (
        start,
        start
            .saturating_add(ATTESTED_BATCH)
            .min(last.saturating_add(1)),
    )
}

impl VoteDomain {
    /// The EIP-712 digest of an attested batch whose items have vote keys `keys` (in order),
    /// the same as `Bridge.attestationDigest` on the destination.
    pub fn attestation_digest(&self, keys: &[B256]) -> B256 {
        self.destination_digest(batch_struct("AttestedBatch(bytes32[] voteKeys)", keys))
    }

    /// The EIP-712 digest operators sign to cancel the requests with vote keys `keys` (in
    /// order) on the destination, the same as `IBridgeExtension.cancelDigest` there: the typed
    /// data `CancelBatch(bytes32[] voteKeys)` under the attestation domain.
    pub fn cancel_digest(&self, keys: &[B256]) -> B256 {
        self.destination_digest(batch_struct("CancelBatch(bytes32[] voteKeys)", keys))
    }

    /// The EIP-712 digest operators sign for the source to refund the request whose vote key is
    /// `key` once the destination cancelled it, the same as `IBridgeExtension.refundDigest` on
    /// the source: `CancelledRequest(bytes32 voteKey)` under the source bridge's domain (this
    /// chain and bridge the source, the salt the destination).
    pub fn refund_digest(&self, key: B256) -> B256 {
        let message =
            keccak256((keccak256("CancelledRequest(bytes32 voteKey)"), key).abi_encode_params());
        typed_digest(
            (self.src_chain_id, self.src_bridge),
            (self.dst_chain_id, self.dst_bridge),
            message,
        )
    }

    /// `struct_hash` under the destination bridge's domain.
    fn destination_digest(&self, struct_hash: B256) -> B256 {
        typed_digest(
            (self.dst_chain_id, self.dst_bridge),
            (self.src_chain_id, self.src_bridge),
            struct_hash,
        )
    }

    /// The digest of a batch of `requests`.
    pub fn batch_digest(&self, requests: &[Request]) -> B256 {
        let keys: Vec<B256> = requests.iter().map(|r| self.vote_key(r)).collect();
        self.attestation_digest(&keys)
    }
}

/// The struct hash of a batch type `(bytes32[] voteKeys)` over `keys`.
fn batch_struct(type_string: &str, keys: &[B256]) -> B256 {
    let packed: Vec<u8> = keys.iter().flat_map(|k| k.0).collect();
    keccak256((keccak256(type_string), keccak256(packed)).abi_encode_params())
}

/// The EIP-712 digest of `struct_hash` under a bridge's domain: ("multibridge", the bridge
/// version in decimal, the bridge's chain, the bridge, salt = keccak256(abi.encode(counterpart
/// chain, counterpart bridge))) — `_typedDigest` of BridgeCore.sol.
fn typed_digest(bridge: (u64, Address), counterpart: (u64, Address), struct_hash: B256) -> B256 {
    let domain_typehash = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)",
    );
    let salt = keccak256((U256::from(counterpart.0), counterpart.1).abi_encode_params());
    let separator = keccak256(
        (
            domain_typehash,
            keccak256("multibridge"),
            keccak256(crate::BRIDGE_VERSION.to_string()),
            U256::from(bridge.0),
            bridge.1,
            salt,
        )
            .abi_encode_params(),
    );
    let mut message = Vec::with_capacity(66);
    message.extend_from_slice(&[0x19, 0x01]);
    message.extend_from_slice(separator.as_slice());
    message.extend_from_slice(struct_hash.as_slice());
    keccak256(message)
}

/// `signature` in the form the bridge takes: low s (the twin of a high s is as valid for the
/// signer and the only one the bridge accepts), 65 bytes r ‖ s ‖ v with v 27 or 28.
pub fn canonical_bytes(signature: &Signature) -> [u8; 65] {
    let mut s = signature.s();
    let mut parity = signature.v();
    if s > HALF_ORDER {
        // s < order: a signature's s is a scalar of the group.
        s = U256::from_be_bytes(SECP256K1_ORDER).saturating_sub(s);
        parity = !parity;
    }
    let mut out = [0u8; 65];
    out[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    out[32..64].copy_from_slice(&s.to_be_bytes::<32>());
    out[64] = if parity { 28 } else { 27 };
    out
}

const SECP256K1_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// Who signed `digest` with the 65-byte `signature` (`None`: not a canonical signature, or it
/// recovers to nobody) — what the bridge would count.
pub fn recover_signer(digest: &B256, signature: &[u8]) -> Option<Address> {
    if signature.len() != 65 {
        return None;
    }
    let s = U256::from_be_slice(&signature[32..64]);
    let parity = match signature[64] {
        27 => false,
        28 => true,
        _ => return None,
    };
    if s > HALF_ORDER {
        return None;
    }
    let sig = Signature::new(U256::from_be_slice(&signature[..32]), s, parity);
    sig.recover_address_from_prehash(digest).ok()
}

/// The `signatures` argument of `executeAttested`: the given (signer, 65 bytes) pairs sorted by
/// signer ascending, one per signer.
pub fn pack_signatures(signatures: &[(Address, [u8; 65])]) -> Bytes {
    let mut sorted: Vec<&(Address, [u8; 65])> = signatures.iter().collect();
    sorted.sort_by_key(|(signer, _)| *signer);
    sorted.dedup_by_key(|(signer, _)| *signer);
    sorted
        .into_iter()
        .flat_map(|(_, bytes)| bytes.iter().copied())
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    fn domain() -> VoteDomain {
        VoteDomain {
            src_chain_id: 5,
            src_bridge: address!("00000000000000000000000000000000000000aa"),
            dst_chain_id: 31337,
            dst_bridge: address!("00000000000000000000000000000000000000bb"),
        }
    }

    /// A handle, a cancel and a refund of the same keys are three different digests, and the
    /// refund's is under the source's domain (swapping source and destination gives the
    /// destination-side envelope of the same struct).
    #[test]
    fn handle_cancel_and_refund_digests_differ() {
        let keys = [B256::repeat_byte(1)];
        let d = domain();
        let handle = d.attestation_digest(&keys);
        let cancel = d.cancel_digest(&keys);
        let refund = d.refund_digest(keys[0]);
        assert_ne!(handle, cancel);
        assert_ne!(cancel, refund);
        assert_ne!(handle, refund);
        let swapped = VoteDomain {
            src_chain_id: d.dst_chain_id,
            src_bridge: d.dst_bridge,
            dst_chain_id: d.src_chain_id,
            dst_bridge: d.src_bridge,
        };
        assert_ne!(
            refund,
            swapped.refund_digest(keys[0]),
            "the domain is the source's"
        );
    }

    #[test]
    fn windows_are_aligned() {
        assert_eq!(batch_run(0, 100, 0), (0, 32));
        assert_eq!(batch_run(0, 100, 31), (0, 32));
        assert_eq!(batch_run(0, 100, 32), (32, 64));
        assert_eq!(batch_run(0, 100, 100), (96, 101));
        assert_eq!(batch_run(30, 37, 33), (30, 38), "a pair's run across 32");
        assert_eq!(batch_run(5, 70, 40), (37, 69));
        assert_eq!(batch_run(5, 70, 70), (69, 71));
        assert_eq!(
            batch_blocks(11, 0),
            (11, 11),
            "its pair's first block empty"
        );
        assert_eq!(batch_blocks(10, 1), (10, 10), "a lone request");
        assert_eq!(batch_blocks(10, 2), (10, 11));
        assert_eq!(batch_blocks(11, 7), (10, 11));
        assert_eq!(batch_blocks(11, 8), (11, 11), "after a busy block");
    }

    #[test]
    fn every_part_of_the_domain_changes_the_digest() {
        let keys = [B256::repeat_byte(1), B256::repeat_byte(2)];
        let base = domain().attestation_digest(&keys);
        let mut variants = Vec::new();
        for change in 0..4 {
            let mut d = domain();
            match change {
                0 => d.src_chain_id += 1,
                1 => d.src_bridge = Address::repeat_byte(9),
                2 => d.dst_chain_id += 1,
                _ => d.dst_bridge = Address::repeat_byte(9),
            }
            variants.push(d.attestation_digest(&keys));
        }
        variants.push(domain().attestation_digest(&keys[..1]));
        variants.push(domain().attestation_digest(&[keys[1], keys[0]]));
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn signatures_recover_canonically_and_pack_sorted() {
        let digest = domain().attestation_digest(&[B256::repeat_byte(3)]);
        let keys: Vec<PrivateKeySigner> = (0..3).map(|_| PrivateKeySigner::random()).collect();
        let mut pairs = Vec::new();
        for key in &keys {
            let sig = key.sign_hash_sync(&digest).unwrap();
            let bytes = canonical_bytes(&sig);
            assert_eq!(recover_signer(&digest, &bytes), Some(key.address()));
            // The high-s twin recovers to the same key but is refused, as by the bridge.
            let mut twin = bytes;
            let s = U256::from_be_slice(&bytes[32..64]);
            twin[32..64]
                .copy_from_slice(&(U256::from_be_bytes(SECP256K1_ORDER) - s).to_be_bytes::<32>());
            twin[64] = if bytes[64] == 27 { 28 } else { 27 };
            assert_eq!(recover_signer(&digest, &twin), None);
            // Its canonical form is the low-s one again.
            let high = Signature::new(
                U256::from_be_slice(&twin[..32]),
                U256::from_be_slice(&twin[32..64]),
                twin[64] == 28,
            );
            assert_eq!(canonical_bytes(&high), bytes);
            pairs.push((key.address(), bytes));
        }
        pairs.push(pairs[0]);
        let packed = pack_signatures(&pairs);
        assert_eq!(packed.len(), 3 * 65, "one per signer");
        let signers: Vec<Address> = packed
            .chunks(65)
            .map(|c| recover_signer(&digest, c).unwrap())
            .collect();
        let mut sorted = signers.clone();
        sorted.sort();
        assert_eq!(signers, sorted, "ascending");
    }
}

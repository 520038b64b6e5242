//! Services a relay can be pointed at besides chains and etcd, for tests and benchmarks: a
//! SoftHSM2 token, a local KMS signing API, an S3-compatible store (moto) and an RPC endpoint that
//! lies about amounts. TEST ONLY.

pub mod hsm;
pub mod kms;
pub mod lying_rpc;
pub mod s3;

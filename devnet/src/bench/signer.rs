//! `multibridge-devnet bench-signers`: what one signature costs with each signer backend —
//! a keystore key in memory, a key inside a SoftHSM2 token (PKCS#11), a KMS key through the AWS
//! SDK against the local KMS stand-in — and what that means for throughput: a vote transaction
//! carries up to `MAX_BATCH` requests and needs one signature, so the signer bounds transfers per
//! second at `signatures/s × batch`.
//!
//! The token and the stand-in are found through the environment (`SOFTHSM2_CONF`, AWS
//! credentials); the command sets them up and runs its measurement in a child process of itself
//! with that environment.

use std::path::Path;
use std::time::Instant;

use alloy::primitives::keccak256;
use multibridge_chain::signer::OperatorSigner;
use serde::{Deserialize, Serialize};

use crate::error::DevnetError;

/// The variable that marks the measuring child.
const WORKER: &str = "MULTIBRIDGE_BENCH_SIGNERS_WORKER";

/// One backend's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendFigures {
    /// `keystore`, `pkcs11` or `aws-kms`.
    pub backend: String,
    /// What it ran against.
    pub against: String,
    /// Signatures timed.
    pub signatures: usize,
    /// Median milliseconds per signature.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Signatures per second, one after another (one submitter signs one transaction at a time).
    pub signatures_per_sec: f64,
    /// Transfers per second the signer allows with full batches (`signatures_per_sec × batch`).
    pub transfers_per_sec_at_full_batches: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignerBench {
    /// Requests per vote transaction at most (`Bridge.MAX_BATCH`).
    pub batch: usize,
    /// Per backend.
    pub backends: Vec<BackendFigures>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn measure(
    signer: &OperatorSigner,
    against: &str,
    signatures: usize,
    batch: usize,
) -> Result<BackendFigures, DevnetError> {
    // One untimed signature first (sessions, connections, the SDK's first request).
    signer
        .probe()
        .await
        .map_err(|e| DevnetError::Invalid(format!("{} signer: {e}", signer.backend())))?;
    let mut times = Vec::with_capacity(signatures);
    let started = Instant::now();
    for i in 0..signatures {
        let hash = keccak256(format!("bench vote transaction {i}"));
        let t = Instant::now();
        signer
            .sign_hash(&hash)
            .await
            .map_err(|e| DevnetError::Invalid(format!("{} signer: {e}", signer.backend())))?;
        times.push(t.elapsed().as_secs_f64() * 1_000.0);
    }
    let total = started.elapsed().as_secs_f64();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let per_sec = if total > 0.0 {
        signatures as f64 / total
    } else {
        0.0
    };
    Ok(BackendFigures {
        backend: signer.backend().to_owned(),
        against: against.to_owned(),
        signatures,
        p50_ms: percentile(&sorted, 0.5),
        p99_ms: percentile(&sorted, 0.99),
        mean_ms: times.iter().sum::<f64>() / times.len().max(1) as f64,
        signatures_per_sec: per_sec,
        transfers_per_sec_at_full_batches: per_sec * batch as f64,
    })
}

/// Run the bench: set up a SoftHSM2 token with one key in `dir`, then measure in a child
/// process that finds it (and the KMS stand-in's credentials) in its environment.
pub async fn run(dir: &Path, signatures: usize) -> Result<SignerBench, DevnetError> {
    if std::env::var_os(WORKER).is_some() {
        return measure_all(dir, signatures).await;
    }
    std::fs::create_dir_all(dir).map_err(|e| DevnetError::io(dir, e))?;
    let hsm = crate::stand_in::hsm::SoftHsm::create(dir)?;
    hsm.create_key(0)?;
    let (conf_key, conf) = hsm.env();
    let exe = std::env::current_exe().map_err(|e| DevnetError::io(Path::new("current_exe"), e))?;
    let out = tokio::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(WORKER, "1")
        .env(conf_key, conf)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEDEVNET")
        .env("AWS_SECRET_ACCESS_KEY", "devnet-only-not-a-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .map_err(|e| DevnetError::Invalid(format!("bench-signers worker: {e}")))?;
    if !out.status.success() {
        return Err(DevnetError::Invalid(format!(
            "bench-signers worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.rfind("\n{").map(|i| &text[i + 1..]).unwrap_or(&text);
    serde_json::from_str(json)
        .map_err(|e| DevnetError::Invalid(format!("bench-signers worker printed no report: {e}")))
}

async fn measure_all(dir: &Path, signatures: usize) -> Result<SignerBench, DevnetError> {
    use multibridge_chain::signer::aws::{KmsKey, KmsSigner};
    use multibridge_chain::signer::pkcs11::{Pkcs11Signer, TokenKey};
    let batch = 64;
    let mut backends = Vec::new();

    let local = OperatorSigner::local(alloy::signers::local::PrivateKeySigner::random());
    backends.push(
        measure(
            &local,
            "a key in memory (keystore or dev key)",
            signatures,
            batch,
        )
        .await?,
    );

    let hsm = Pkcs11Signer::open(TokenKey {
        module: crate::stand_in::hsm::SOFTHSM_MODULE.into(),
        token_label: crate::stand_in::hsm::TOKEN_LABEL.into(),
        key_label: crate::stand_in::hsm::SoftHsm::key_label(0),
        pin_file: Some(dir.join("softhsm").join("hsm-pin")),
        pin_env: None,
    })
    .await
    .map_err(|e| DevnetError::Invalid(format!("pkcs11 signer: {e}")))?;
    backends.push(
        measure(
            &OperatorSigner::pkcs11(hsm),
            "SoftHSM2 (a software token on this machine)",
            signatures,
            batch,
        )
        .await?,
    );

    let kms = crate::stand_in::kms::KmsStandIn::start().await?;
    let key = KmsKey {
        key_id: "bench-key".into(),
        region: Some("us-east-1".into()),
        endpoint_url: Some(kms.url()),
    };
    let signer = KmsSigner::open(&key)
        .await
        .map_err(|e| DevnetError::Invalid(format!("aws-kms signer: {e}")))?;
    backends.push(
        measure(
            &OperatorSigner::aws(signer),
            "the local KMS stand-in over HTTP (the AWS SDK's cost; real KMS adds its network round trip)",
            signatures,
            batch,
        )
        .await?,
    );
    let report = SignerBench { batch, backends };
    // The parent reads the last JSON object of this process's output.
    println!(
        "\n{}",
        serde_json::to_string(&report).map_err(|e| DevnetError::Invalid(e.to_string()))?
    );
    std::process::exit(0);
}

/// The readable table.
pub fn render(report: &SignerBench) -> String {
    let mut out = format!(
        "signing cost per vote transaction (one signature each; up to {} requests per vote)\n",
        report.batch
    );
    out.push_str(&format!(
        "{:<10} {:>9} {:>9} {:>9} {:>10} {:>18}  against\n",
        "backend", "p50 ms", "p99 ms", "mean ms", "sigs/s", "transfers/s @batch"
    ));
    for b in &report.backends {
        out.push_str(&format!(
            "{:<10} {:>9.3} {:>9.3} {:>9.3} {:>10.0} {:>18.0}  {}\n",
            b.backend,
            b.p50_ms,
            b.p99_ms,
            b.mean_ms,
            b.signatures_per_sec,
            b.transfers_per_sec_at_full_batches,
            b.against
        ));
    }
    out
}

/// Signatures per backend when none are asked for.
pub const DEFAULT_SIGNATURES: usize = 500;

//! The backup log's ECIES is the standard construction: a message this crate encrypts opens
//! with eciesjs (an independent implementation in JavaScript, installed by `.tools/setup.sh`),
//! and one eciesjs encrypts opens here.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use k256::SecretKey;
use k256::elliptic_curve::rand_core::OsRng;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use multibridge::harness::ecies;

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools")
}

/// Run `script` with node in `.tools` (where eciesjs is) and return its stdout.
fn node(script: &str) -> String {
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .current_dir(tools())
        .output()
        .expect("node runs (installed with the project's tools)");
    assert!(
        out.status.success(),
        "node failed (run bash .tools/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn eciesjs_opens_what_the_relay_encrypts_and_the_relay_opens_what_eciesjs_encrypts() {
    let secret = SecretKey::random(&mut OsRng);
    let secret_hex = alloy::hex::encode(secret.to_bytes());
    let public_hex = alloy::hex::encode(secret.public_key().to_encoded_point(false).as_bytes());
    let message = "backup log v3: snapshot sha256 9f2c…, members operator-1-r1,operator-1-r2";

    // Relay → eciesjs.
    let sealed = ecies::encrypt(&secret.public_key(), message.as_bytes(), &mut OsRng);
    let opened = node(&format!(
        "const e = require('eciesjs'); \
         process.stdout.write(Buffer.from(e.decrypt('{secret_hex}', Buffer.from('{}', 'hex'))).toString('utf8'))",
        alloy::hex::encode(&sealed)
    ));
    assert_eq!(opened, message);

    // eciesjs → relay.
    let from_js = node(&format!(
        "const e = require('eciesjs'); \
         process.stdout.write(Buffer.from(e.encrypt('{public_hex}', Buffer.from({message:?}, 'utf8'))).toString('hex'))"
    ));
    let opened = ecies::decrypt(&secret, &alloy::hex::decode(from_js).unwrap()).unwrap();
    assert_eq!(String::from_utf8(opened).unwrap(), message);
}

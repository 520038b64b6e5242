//! Links the relay's release binary with the functions that run laid out together, hottest
//! first (`link-order.txt`; docs/benchmarks.md, "The relay's code laid out by use").
//!
//! The kernel maps a binary's code in runs of pages around each page that executes, so the
//! code a relay runs, scattered over 25 MB, kept most of the binary resident in every relay.
//! The order is a symbol list for LLD, Rust's default linker on x86_64-unknown-linux-gnu since
//! 1.90 (this workspace needs 1.94). A symbol the list names that the build no longer has is
//! skipped, so a stale list costs memory, never a build. Another linker (`-C linker`,
//! `-fuse-ld`, another target) gets no list; `MULTIBRIDGE_LINK_ORDER=0` turns it off.
#![forbid(unsafe_code)]

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=MULTIBRIDGE_LINK_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let default_linker = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu")
        && env::var_os("RUSTC_LINKER").is_none()
        && !env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|flags| flags.contains("linker") || flags.contains("fuse-ld"));
    let turned_off = env::var("MULTIBRIDGE_LINK_ORDER").is_ok_and(|v| v == "0");
    if !release || !default_linker || turned_off {
        return;
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets it for build scripts");
    let list = Path::new(&manifest_dir).join("link-order.txt");
    if !list.is_file() {
        return;
    }
    println!(
        "cargo::rustc-link-arg-bin=multibridge=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo::rustc-link-arg-bin=multibridge=-Wl,--no-warn-symbol-ordering");
}

//! Builds the network sandbox's process (`pause/pause.c`) as a static
//! executable; `swarmd` carries it and imports it into Docker as the
//! sandbox image (no registry needed). Needs the C compiler and static libc
//! that linking Rust on Linux already needs (`cc`, Debian's libc6-dev).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=pause/pause.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args(["-static", "-Os", "-s", "-Wall", "-o"])
        .arg(out.join("pause"))
        .arg("pause/pause.c")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building pause/pause.c with {compiler} failed ({s}); a static libc is needed (Debian: libc6-dev)"),
        Err(e) => panic!("cannot run the C compiler {compiler} for pause/pause.c: {e}"),
    }
}

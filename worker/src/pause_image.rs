//! The image of a task's network sandbox container: one static program
//! (`pause/pause.c`, built into `swarmd` by the build script) that holds
//! the network namespace the task's container then joins.
//!
//! No registry is reachable, so the image is imported into the node's
//! Docker from the bytes `swarmd` carries (as `docker import` would), once,
//! under a tag derived from those bytes: a new `swarmd` with another
//! program imports its own.

use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// The sandbox program, a static executable.
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// Repository name of the sandbox image.
pub const REPOSITORY: &str = "swarmlet-pause";

/// The image's tag: the first 12 hex digits of the program's SHA-256.
pub fn tag() -> String {
    hex::encode(Sha256::digest(PROGRAM))[..12].to_string()
}

/// `swarmlet-pause:<tag>`.
pub fn reference() -> String {
    format!("{REPOSITORY}:{}", tag())
}

/// The image's root file system: the program as `/pause`.
fn rootfs() -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(PROGRAM.len() as u64);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    archive.append_data(&mut header, "pause", PROGRAM)?;
    archive.into_inner()
}

/// Makes sure the sandbox image is in the node's Docker; returns its
/// reference. Errors are worded for a task's status.
pub async fn ensure(d: &Docker) -> Result<String, String> {
    let tag = tag();
    let reference = format!("{REPOSITORY}:{tag}");
    if d.inspect_image(&reference).await.is_ok() {
        return Ok(reference);
    }
    let rootfs = rootfs().map_err(|e| format!("building the sandbox image: {e}"))?;
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(REPOSITORY.into()),
        tag: Some(tag),
        changes: vec![r#"CMD ["/pause"]"#.into()],
        ..Default::default()
    };
    let mut import = d.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
    while let Some(step) = import.next().await {
        step.map_err(|e| format!("importing the sandbox image {reference}: {e}"))?;
    }
    tracing::info!(image = %reference, "imported the network sandbox image");
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_holds_the_program_as_pause() {
        let bytes = rootfs().expect("archive");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u64, u32)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let path = e.path().expect("path").to_string_lossy().to_string();
                (path, e.size(), e.header().mode().expect("mode"))
            })
            .collect();
        assert_eq!(entries, vec![("pause".into(), PROGRAM.len() as u64, 0o755)]);
        // A static ELF executable.
        assert_eq!(&PROGRAM[..4], b"\x7fELF");
    }

    #[test]
    fn the_tag_follows_the_program() {
        assert_eq!(tag().len(), 12);
        assert_eq!(reference(), format!("swarmlet-pause:{}", tag()));
    }
}

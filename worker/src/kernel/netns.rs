//! Network namespaces: named ones under `/run/netns` (what `ip netns`
//! lists), and running netlink work inside any namespace.
//!
//! A netlink socket belongs to the namespace of the thread that opened it,
//! so every piece of work runs on a fresh OS thread that first `setns`es
//! into the target namespace, with its own single-threaded runtime and
//! netlink connection. Never a tokio worker or blocking-pool thread: those
//! are reused, and a namespace switch would leak into unrelated work.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::KernelError;

/// Where named namespaces live (as iproute2 keeps them).
pub const NETNS_DIR: &str = "/run/netns";

/// The path of the named namespace `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// The network namespace of this process (its main thread), where the
/// node's own interfaces and the VXLAN sockets live.
pub fn host_ns() -> PathBuf {
    PathBuf::from("/proc/self/ns/net")
}

/// The network namespace of a process (a container's sandbox).
pub fn of_pid(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

fn sys(what: &str, e: impl std::fmt::Display) -> KernelError {
    KernelError::System(format!("{what}: {e}"))
}

/// Whether the named namespace exists (a namespace bind-mounted at its path).
pub fn exists(name: &str) -> bool {
    let path = path_of(name);
    let Ok(meta) = std::fs::metadata(&path) else {
        return false;
    };
    // A bind-mounted namespace file is on the nsfs device; a leftover plain
    // file (mount gone) is on the tmpfs of /run.
    let parent = std::fs::metadata(NETNS_DIR).ok();
    use std::os::unix::fs::MetadataExt;
    parent.is_some_and(|p| p.dev() != meta.dev())
}

/// Creates the named namespace `name` (replacing a stale file of that name).
pub async fn create(name: &str) -> Result<(), KernelError> {
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| sys("creating /run/netns", e))?;
    let path = path_of(name);
    if path.exists() {
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&path);
    }
    File::create(&path).map_err(|e| sys(&format!("creating {}", path.display()), e))?;
    let target = path.clone();
    let made = on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys(&format!("mounting {}", target.display()), e))
    })
    .await;
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Deletes the named namespace `name` (its interfaces go with it).
pub fn delete(name: &str) {
    let path = path_of(name);
    let _ = umount2(&path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(&path);
}

/// Names of the named namespaces that start with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `work` on a fresh OS thread and waits for it without blocking the
/// runtime.
async fn on_thread<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<KernelError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("swarmlet-netns".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| E::from(sys("spawning a namespace thread", e)))?;
    rx.await
        .map_err(|_| E::from(KernelError::System("a namespace thread died".into())))?
}

/// Runs blocking `work` on a fresh OS thread inside the namespace at `ns`
/// (processes it spawns, such as `nft`, start in that namespace).
pub async fn run_blocking_in<T, E, F>(ns: &Path, work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<KernelError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    let ns = ns.to_path_buf();
    on_thread(move || {
        let file = File::open(&ns).map_err(|e| sys(&format!("opening {}", ns.display()), e))?;
        setns(file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| sys(&format!("entering {}", ns.display()), e))?;
        work()
    })
    .await
}

/// Sets a `net.*` sysctl of the calling thread's namespace (the `/proc/sys/net`
/// files show the namespace of the thread that opens them); `key` is the
/// path below `/proc/sys/net`, e.g. `ipv4/ip_forward`. A sysctl this kernel
/// lacks is skipped.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), KernelError> {
    let path = Path::new("/proc/sys/net").join(key);
    if !path.exists() {
        return Ok(());
    }
    let now = std::fs::read_to_string(&path).unwrap_or_default();
    if now.trim() == value {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|e| sys(&format!("setting {}", path.display()), e))
}

/// Runs `work` with a netlink handle inside the namespace at `ns`.
pub async fn run_in<T, E, F, Fut>(ns: &Path, work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<KernelError> + Send + 'static,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>>,
{
    let ns = ns.to_path_buf();
    on_thread(move || {
        let file = File::open(&ns).map_err(|e| sys(&format!("opening {}", ns.display()), e))?;
        setns(file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| sys(&format!("entering {}", ns.display()), e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| sys("runtime", e))?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| sys("netlink socket", e))?;
            let driver = tokio::spawn(conn);
            let out = work(handle).await;
            driver.abort();
            out
        })
    })
    .await
}

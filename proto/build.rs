//! Compiles proto/swarmlet/*.proto with protox (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/swarmlet/common.proto",
        "proto/swarmlet/objects.proto",
        "proto/swarmlet/store.proto",
        "proto/swarmlet/ca.proto",
        "proto/swarmlet/raft.proto",
        "proto/swarmlet/dispatcher.proto",
        "proto/swarmlet/logs.proto",
        "proto/swarmlet/control.proto",
        "proto/swarmlet/local.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}

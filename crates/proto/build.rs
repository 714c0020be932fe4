//! Compiles `proto/*.proto` with `protox`, a pure-Rust protobuf compiler, so that
//! building dida never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/storage.proto",
        "proto/execution.proto",
        "proto/control.proto",
        "proto/registry.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}

//! Compiles `proto/*.proto` with `protox`, a pure-Rust protobuf compiler, so that
//! building dida never needs a system `protoc`.
//!
//! It also writes `grpc_methods.rs`: the full path of every method the `.proto`
//! files define, sorted, so that metrics can label calls from that bounded set
//! (anything else a client sends is counted as `other`).

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
    let mut methods: Vec<String> = descriptors
        .file
        .iter()
        .flat_map(|file| {
            let package = file.package.clone().unwrap_or_default();
            file.service.iter().flat_map(move |service| {
                let prefix = format!("/{package}.{}/", service.name.clone().unwrap_or_default());
                service.method.iter().map(move |method| {
                    format!("{prefix}{}", method.name.clone().unwrap_or_default())
                })
            })
        })
        .collect();
    methods.sort();
    let listing: String = methods.iter().map(|m| format!("    {m:?},\n")).collect();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("grpc_methods.rs");
    std::fs::write(out, format!("&[\n{listing}]\n"))?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}

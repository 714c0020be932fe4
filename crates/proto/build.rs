//! Compiles `proto/*.proto` with `protox`, a pure-Rust protobuf compiler, so that
//! building dida never needs a system `protoc`.
//!
//! It also writes `grpc_methods.rs`: the full path of every method the `.proto`
//! files define, sorted, so that metrics can label calls from that bounded set
//! (anything else a client sends is counted as `other`).
//!
//! And it keeps the files usable by the standard `protoc` and every language's
//! generator: it refuses an rpc named like a message of its package (protox
//! accepts that, protoc does not), and an rpc whose request is not named
//! `…Request` or whose reply is not named `…Reply`, so clients generated in other
//! languages read the same way everywhere.

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
    check_names(&descriptors)?;
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

/// The naming rules of the module documentation, checked on every build.
fn check_names(
    descriptors: &protox::prost_reflect::prost_types::FileDescriptorSet,
) -> Result<(), String> {
    let mut broken = Vec::new();
    for file in &descriptors.file {
        let messages: Vec<&str> = file.message_type.iter().map(|m| m.name()).collect();
        for service in &file.service {
            for method in &service.method {
                let rpc = format!("{}.{}", service.name(), method.name());
                if messages.contains(&method.name()) {
                    broken.push(format!(
                        "{}: rpc {rpc} shares its name with a message (the standard protoc refuses that)",
                        file.name()
                    ));
                }
                let simple = |full: &str| full.rsplit('.').next().unwrap_or_default().to_string();
                let request = simple(method.input_type());
                let reply = simple(method.output_type());
                if !request.ends_with("Request") {
                    broken.push(format!(
                        "{}: rpc {rpc} takes {request}, not a message named …Request",
                        file.name()
                    ));
                }
                if !reply.ends_with("Reply") {
                    broken.push(format!(
                        "{}: rpc {rpc} returns {reply}, not a message named …Reply",
                        file.name()
                    ));
                }
            }
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken.join("\n"))
    }
}

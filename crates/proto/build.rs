//! Compiles `proto/dolbom/v1/*.proto` with the vendored protoc (no system protoc needed).
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it was compiled: a build script
    // binary shared through one target directory by two checkouts must
    // compile the protos of the checkout that runs it.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let files: Vec<PathBuf> = ["readings", "households", "incidents", "municipality"]
        .iter()
        .map(|f| root.join(format!("dolbom/v1/{f}.proto")))
        .collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(
            PathBuf::from(std::env::var("OUT_DIR")?).join("dolbom_v1_descriptor.bin"),
        )
        .compile_protos(&files, &[root])?;
    Ok(())
}

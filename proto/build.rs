//! Compiles every `.proto` file under `schemas/` into Rust with prost.
//!
//! `protox` parses the schemas in pure Rust (no system `protoc`), and its
//! descriptor set is handed to `prost-build`. Everything lands in one file,
//! `$OUT_DIR/weir.rs`, because all schemas share the package `weir`; the
//! encoded descriptor set goes to `$OUT_DIR/weir_descriptor.bin`.

use std::error::Error;
use std::path::{Path, PathBuf};

use prost::Message;

const SCHEMA_DIR: &str = "schemas";
const DESCRIPTOR_FILE: &str = "weir_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={SCHEMA_DIR}");
    println!("cargo:rerun-if-changed=build.rs");

    let files = proto_files(Path::new(SCHEMA_DIR))?;
    if files.is_empty() {
        return Err(format!("no .proto files found under {SCHEMA_DIR}/").into());
    }

    // Well-known imports (google/protobuf/timestamp.proto) are resolved by
    // protox itself and map to prost-types in the generated code.
    let fds = protox::compile(&files, [SCHEMA_DIR])?;

    // The descriptor set is kept for the tests, which check that the round
    // trip covers every message the schemas define.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join(DESCRIPTOR_FILE), fds.encode_to_vec())?;

    prost_build::Config::new()
        // Maps encode in key order, so equal values give equal bytes.
        .btree_map(["."])
        // `prost::Name` on every message: full names for tests and Any URLs.
        .enable_type_names()
        .compile_fds(fds)?;
    Ok(())
}

/// All `.proto` files directly under `dir`, sorted so the build does not
/// depend on directory order.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

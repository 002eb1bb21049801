//! Compiles `api/**/*.proto` with a pure-Rust protobuf compiler (`protox`), so
//! building Ember needs no system `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "types/v1/types.proto",
    "google/v1/profile.proto",
    "push/v1/push.proto",
    "querier/v1/querier.proto",
    "querier/v1/querier_async.proto",
    "ingester/v1/ingester.proto",
    "google/api/httpbody.proto",
    "settings/v1/setting.proto",
    "status/v1/status.proto",
    "adhocprofiles/v1/adhocprofiles.proto",
    "capabilities/v1/feature_flags.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../api");
    println!("cargo:rerun-if-changed={}", api_dir.display());
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| api_dir.join(p)).collect();
    let descriptors = protox::compile(&files, [&api_dir])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptors.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(descriptors)?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    // Connect's protojson codec discards unknown fields and newer clients send
    // fields and enum values this server does not know: both are ignored (an
    // unknown enum value reads as the enum's zero value, its documented fallback).
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .ignore_unknown_enum_variants()
        .build(&[
            ".types.v1",
            ".google.v1",
            ".push.v1",
            ".querier.v1",
            ".ingester.v1",
            ".google.api",
            ".settings.v1",
            ".status.v1",
            ".adhocprofiles.v1",
            ".capabilities.v1",
        ])?;
    Ok(())
}

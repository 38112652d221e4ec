//! Compiles `proto/stagewise_ps.proto` with a vendored `protoc`, so no system install is needed
//! (only with the `grpc` feature; the server core needs no generated code).

#[cfg(not(feature = "grpc"))]
fn main() {}

#[cfg(feature = "grpc")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/stagewise_ps.proto");
    tonic_prost_build::configure()
        .bytes(".stagewise.ps.v1")
        .compile_protos(&["proto/stagewise_ps.proto"], &["proto"])?;
    Ok(())
}

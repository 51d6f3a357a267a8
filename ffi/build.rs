//! Generates `include/lmf.h` from the crate's `extern "C"` items with cbindgen. The header is
//! committed; it is rewritten only when its text changes, so a change to the ABI shows up as
//! a diff of the header in the same commit (CI checks that the committed file is current).

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not read ffi/src");
    let mut text = Vec::new();
    bindings.write(&mut text);
    let path = dir.join("include").join("lmf.h");
    if std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(path.parent().expect("include/")).expect("ffi/include");
        let tmp = path.with_extension("h.tmp");
        std::fs::write(&tmp, &text).expect("write ffi/include/lmf.h.tmp");
        std::fs::rename(&tmp, &path).expect("rename ffi/include/lmf.h");
    }
}

//! The Python bindings' tests: runs `pytest ffi/python/tests` with the interpreter in
//! `$LMF_FFI_PYTHON` (a venv with numpy and pytest, made by `ci/ffi-python-env.sh`) against the
//! liblmf.so that cargo built for this test run.
//!
//! Without `LMF_FFI_PYTHON` the test is skipped, unless `LMF_REQUIRE_FFI_PYTHON=1` (set by
//! `ci/ffi-python-env.sh`, which `.ci/run` sources): then it fails.

use std::path::PathBuf;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The liblmf.so of this build: `target/<profile>/deps/` (where this test binary is) or
/// `target/<profile>/`.
fn lib_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps folder");
    let candidates = [
        deps.join("liblmf.so"),
        deps.parent().expect("profile folder").join("liblmf.so"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("liblmf.so not found: looked for {candidates:?}"))
        .clone()
}

#[test]
fn python_bindings_pass_pytest() {
    let Some(python) = std::env::var_os("LMF_FFI_PYTHON") else {
        assert!(
            std::env::var("LMF_REQUIRE_FFI_PYTHON").as_deref() != Ok("1"),
            "LMF_REQUIRE_FFI_PYTHON=1 but LMF_FFI_PYTHON is not set (source ci/ffi-python-env.sh)"
        );
        eprintln!("skipped: LMF_FFI_PYTHON is not set (source ci/ffi-python-env.sh)");
        return;
    };
    let lib = lib_path();
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "ffi/python/tests",
        ])
        .current_dir(ROOT)
        .env("LMF_LIB", &lib)
        .env("PYTHONPATH", "ffi/python")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", PathBuf::from(&python).display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pytest failed ({}) with LMF_LIB={}:\n{report}",
        out.status,
        lib.display()
    );
    eprintln!("pytest with LMF_LIB={}:\n{report}", lib.display());
}

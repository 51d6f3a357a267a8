//! The NVRTC disk cache: a kernel compiles once, later loads read the cached cubin, and a
//! damaged (empty) cache file is recompiled. Needs NVRTC (CI has it), not a GPU.

use lmf_kernels::cuda::nvrtc::{compile_cached, nvrtc_available};
use lmf_kernels::cuda::sources::RMSNORM;

#[test]
fn compiled_cubins_are_cached_and_reused() {
    if !nvrtc_available() {
        assert!(
            std::env::var("LMF_REQUIRE_NVRTC").is_err(),
            "LMF_REQUIRE_NVRTC set but no NVRTC"
        );
        eprintln!("skipped: NVRTC not found");
        return;
    }
    let dir = std::env::temp_dir().join(format!("lmf-kcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // This test binary is the only user of the variable.
    std::env::set_var("LMF_KERNEL_CACHE", &dir);
    let first = compile_cached(&RMSNORM, "sm_80").unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("rmsnorm-") && name.contains("-sm_80-nvrtc") && name.ends_with(".cubin"),
        "{name}"
    );
    assert_eq!(std::fs::read(&files[0]).unwrap(), first);
    // A second call reads the file: make it recognisable and see it come back.
    let mut marked = first.clone();
    marked.push(0xAB);
    std::fs::write(&files[0], &marked).unwrap();
    assert_eq!(compile_cached(&RMSNORM, "sm_80").unwrap(), marked);
    // An empty (torn) file is not trusted: the kernel is compiled again and the file rewritten.
    std::fs::write(&files[0], b"").unwrap();
    assert_eq!(compile_cached(&RMSNORM, "sm_80").unwrap(), first);
    assert_eq!(std::fs::read(&files[0]).unwrap(), first);
    // Another arch is another entry; no temporary files are left behind.
    compile_cached(&RMSNORM, "sm_90a").unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! NVRTC: compiles a kernel source (`kernels/cuda/*.cu`) to a cubin for one GPU arch, with our
//! shared headers (`*.cuh`) handed to NVRTC in memory and the CUDA headers (`cuda_bf16.h`, ..)
//! found on disk. Compiled cubins are cached on disk, keyed by source hash + arch + NVRTC
//! version, so a kernel compiles once per machine.
//!
//! NVRTC runs without a GPU: CI compiles every kernel for sm_80 and sm_90a with it.

use super::error::{CudaError, CudaResult};
use super::sources::{KernelSource, HEADERS};
use cudarc::nvrtc::sys;
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;

/// Whether libnvrtc can be loaded (probing never panics).
pub fn nvrtc_available() -> bool {
    std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false)
}

/// NVRTC's `(major, minor)` version.
pub fn nvrtc_version() -> CudaResult<(i32, i32)> {
    if !nvrtc_available() {
        return Err(CudaError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    check(r, "nvrtcVersion")?;
    Ok((major, minor))
}

/// Folders searched for the CUDA headers, in order: `LMF_CUDA_INCLUDE` (`:`-separated),
/// `$CUDA_HOME/include`, `$CUDA_PATH/include`, `/usr/local/cuda/include`, and the
/// `nvidia/cu13/include` (+ `cccl`) folders of the PyPI wheels under `LMF_CUDA_WHEELS`.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(v) = std::env::var("LMF_CUDA_INCLUDE") {
        dirs.extend(v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(v) = std::env::var(var) {
            dirs.push(PathBuf::from(v).join("include"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    if let Ok(v) = std::env::var("LMF_CUDA_WHEELS") {
        for cu in ["cu13", "cu12"] {
            let inc = PathBuf::from(&v).join("nvidia").join(cu).join("include");
            dirs.push(inc.join("cccl"));
            dirs.push(inc);
        }
    }
    dirs.retain(|d| d.join("cuda_bf16.h").exists() || d.join("cuda").is_dir());
    dirs
}

/// One NVRTC compilation: the cubin and NVRTC's log (warnings, and ptxas's register and
/// shared-memory report when `verbose`).
pub struct Compiled {
    /// The cubin image for the requested arch.
    pub cubin: Vec<u8>,
    /// NVRTC's log (may be empty).
    pub log: String,
}

fn check(r: sys::nvrtcResult, what: &str) -> CudaResult<()> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(CudaError::Driver(format!("{what}: {r:?}")))
    }
}

/// The compile options for `arch` (e.g. `sm_90a`).
fn options(arch: &str, verbose: bool) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "--device-as-default-execution-space".to_string(),
        "-lineinfo".to_string(),
        "-DNDEBUG".to_string(),
    ];
    if verbose {
        o.push("-Xptxas=-v".to_string());
        o.push("-Xptxas=-warn-spills".to_string());
        o.push("-Xptxas=-warn-lmem-usage".to_string());
    }
    for d in include_dirs() {
        o.push(format!("--include-path={}", d.display()));
    }
    o
}

/// Compiles `src` for `arch` (a real target like `sm_80` or `sm_90a`, so ptxas runs).
pub fn compile(src: &KernelSource, arch: &str, verbose: bool) -> CudaResult<Compiled> {
    if !nvrtc_available() {
        return Err(CudaError::NoNvrtc);
    }
    let code = CString::new(src.code).map_err(|_| CudaError::shape("nvrtc", "NUL in source"))?;
    let name = CString::new(format!("{}.cu", src.name)).unwrap_or_default();
    let hdr_src: Vec<CString> = HEADERS
        .iter()
        .map(|(_, s)| CString::new(*s).unwrap_or_default())
        .collect();
    let hdr_names: Vec<CString> = HEADERS
        .iter()
        .map(|(n, _)| CString::new(*n).unwrap_or_default())
        .collect();
    let hdr_src_p: Vec<*const c_char> = hdr_src.iter().map(|s| s.as_ptr()).collect();
    let hdr_names_p: Vec<*const c_char> = hdr_names.iter().map(|s| s.as_ptr()).collect();
    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    check(
        unsafe {
            sys::nvrtcCreateProgram(
                &mut prog,
                code.as_ptr(),
                name.as_ptr(),
                HEADERS.len() as i32,
                hdr_src_p.as_ptr(),
                hdr_names_p.as_ptr(),
            )
        },
        "nvrtcCreateProgram",
    )?;
    let opts: Vec<CString> = options(arch, verbose)
        .into_iter()
        .map(|s| CString::new(s).unwrap_or_default())
        .collect();
    let opts_p: Vec<*const c_char> = opts.iter().map(|s| s.as_ptr()).collect();
    let r = unsafe { sys::nvrtcCompileProgram(prog, opts_p.len() as i32, opts_p.as_ptr()) };
    let log = program_log(prog);
    let out = if r != sys::nvrtcResult::NVRTC_SUCCESS {
        Err(CudaError::Compile {
            name: src.name.to_string(),
            arch: arch.to_string(),
            log: log.clone(),
        })
    } else {
        cubin(prog).map(|cubin| Compiled { cubin, log })
    };
    unsafe { sys::nvrtcDestroyProgram(&mut prog) };
    out
}

fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut n = 0usize;
    if unsafe { sys::nvrtcGetProgramLogSize(prog, &mut n) } != sys::nvrtcResult::NVRTC_SUCCESS {
        return String::new();
    }
    let mut buf = vec![0 as c_char; n.max(1)];
    unsafe { sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr()) };
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .trim()
        .to_string()
}

fn cubin(prog: sys::nvrtcProgram) -> CudaResult<Vec<u8>> {
    let mut n = 0usize;
    check(
        unsafe { sys::nvrtcGetCUBINSize(prog, &mut n) },
        "nvrtcGetCUBINSize",
    )?;
    let mut buf = vec![0u8; n];
    check(
        unsafe { sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) },
        "nvrtcGetCUBIN",
    )?;
    Ok(buf)
}

/// The kernel cache folder: `LMF_KERNEL_CACHE`, else `$XDG_CACHE_HOME/lmf/kernels`, else
/// `~/.cache/lmf/kernels`.
pub fn cache_dir() -> PathBuf {
    if let Ok(v) = std::env::var("LMF_KERNEL_CACHE") {
        return PathBuf::from(v);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|_| std::env::temp_dir());
    base.join("lmf").join("kernels")
}

/// FNV-1a over the source and every shared header: the cache key's content part.
fn source_hash(src: &KernelSource) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    eat(src.code.as_bytes());
    for (n, s) in HEADERS {
        eat(n.as_bytes());
        eat(s.as_bytes());
    }
    h
}

/// The cubin of `src` for `arch`: from the disk cache when present, else compiled and stored
/// (written to a temporary name and renamed, so a crash never leaves a torn file).
pub fn compile_cached(src: &KernelSource, arch: &str) -> CudaResult<Vec<u8>> {
    let (maj, min) = nvrtc_version()?;
    let dir = cache_dir();
    let file = dir.join(format!(
        "{}-{:016x}-{arch}-nvrtc{maj}.{min}.cubin",
        src.name,
        source_hash(src)
    ));
    if let Ok(bytes) = std::fs::read(&file) {
        if !bytes.is_empty() {
            return Ok(bytes);
        }
    }
    let compiled = compile(src, arch, false)?;
    // The cache is best effort: a read-only or full disk only costs a recompile next time.
    let _ = store(&dir, &file, &compiled.cubin);
    Ok(compiled.cubin)
}

/// Writes `bytes` to `file` through a temporary name + rename (never a torn file).
fn store(dir: &std::path::Path, file: &std::path::Path, bytes: &[u8]) -> CudaResult<()> {
    let io = |err| CudaError::Cache {
        path: file.display().to_string(),
        err,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().and_then(|s| s.to_str()).unwrap_or("k"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, file).map_err(io)
}

//! The process's allocator policy for compute: freed memory stays in the process.
//!
//! Every op returns a fresh output buffer. With glibc's defaults a buffer of more than
//! 128 KiB–32 MiB (its dynamic mmap threshold) is a fresh `mmap`, and freed heap memory above
//! its trim threshold goes back to the kernel, so the next op's buffer faults its pages in
//! again and the kernel zeroes each of them: on the 2-core bench LoRA run, page faults and
//! the kernel's page clearing took about 10 % of a step. Raising both thresholds makes freed
//! buffers reusable: the bench's steps ran 10 % (fp32) to 17 % (bf16) faster, at the same
//! peak RSS within 3 % (README, "Notes"). Memory stays bounded by the
//! largest live set plus what the heap holds free.

/// Largest allocation served from the heap (larger ones stay `mmap`s of their own).
pub const MMAP_THRESHOLD: usize = 256 << 20;
/// Free memory at the top of the heap that is kept rather than returned to the kernel.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Applies the policy to glibc's `malloc` (a no-op elsewhere, and with `LMF_KEEP_FREED=0`,
/// which keeps glibc's defaults for comparison). Call it once, before the work allocates
/// anything large; a program that links lmf as a library decides for itself.
pub fn keep_freed_memory() {
    if std::env::var_os("LMF_KEEP_FREED").is_some_and(|v| v == "0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

//! `Gpu`: one CUDA device as the kernels see it: its context, its one stream, the kernel
//! modules compiled for its arch, a cuBLASLt handle, and the stream-ordered memory pool.
//!
//! Memory: every buffer comes from the driver's stream-ordered pool (`cuMemAllocAsync`, which
//! cudarc uses on devices that support it). The pool's release threshold is raised to "never",
//! so freed blocks stay cached in the pool and are reused by later allocations instead of
//! going back to the driver; the pool's high-water mark is the peak-bytes report.
//!
//! Probing never panics: a machine without libcuda or without a device gets an `Err`.

use super::error::{CudaError, CudaResult};
use super::lt::LtHandle;
use super::nvrtc;
use super::sources::KernelSource;
use cudarc::driver::{
    result as dres, sys as dsys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream,
    DevicePtr, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Whether libcuda can be loaded (never panics).
pub fn driver_available() -> bool {
    std::panic::catch_unwind(|| unsafe { dsys::is_culib_present() }).unwrap_or(false)
}

/// How many CUDA devices are visible (0 without a driver; `CUDA_VISIBLE_DEVICES` applies).
pub fn device_count() -> usize {
    if !driver_available() {
        return 0;
    }
    std::panic::catch_unwind(CudaContext::device_count)
        .ok()
        .and_then(|r| r.ok())
        .map_or(0, |n| n.max(0) as usize)
}

/// The NVRTC target for a compute capability: `sm_90a` on Hopper (for `wgmma`), else `sm_XY`.
pub fn arch_for(major: i32, minor: i32) -> String {
    if major == 9 && minor == 0 {
        "sm_90a".to_string()
    } else {
        format!("sm_{major}{minor}")
    }
}

/// One CUDA device: context, stream, compiled modules, cuBLASLt, memory pool.
pub struct Gpu {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: String,
    cc: (i32, i32),
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    lt: OnceLock<CudaResult<Mutex<LtHandle>>>,
    pool: Option<dsys::CUmemoryPool>,
}

// SAFETY: the raw pool handle is only read through driver calls, which are thread-safe.
unsafe impl Send for Gpu {}
unsafe impl Sync for Gpu {}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu(cuda:{}, {})", self.ordinal, self.arch)
    }
}

static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();

impl Gpu {
    /// The shared handle of device `ordinal`, created on first use.
    pub fn get(ordinal: usize) -> CudaResult<Arc<Gpu>> {
        let map = GPUS.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = map.get(&ordinal) {
            return Ok(g.clone());
        }
        let g = Arc::new(Gpu::open(ordinal)?);
        map.insert(ordinal, g.clone());
        Ok(g)
    }

    fn open(ordinal: usize) -> CudaResult<Gpu> {
        if !driver_available() {
            return Err(CudaError::NoDriver);
        }
        let count = device_count();
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal)).map_err(|_| {
            CudaError::Driver(format!("creating a context on cuda:{ordinal} panicked"))
        })??;
        // One stream per device: cudarc's cross-stream event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream()?;
        let cc = ctx.compute_capability()?;
        let pool = if ctx.has_async_alloc() {
            let pool = unsafe { dres::device::get_default_mem_pool(ctx.cu_device()) }?;
            let mut keep = u64::MAX;
            unsafe {
                dres::mem_pool::set_attribute(
                    pool,
                    dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    &mut keep as *mut u64 as *mut _,
                )
            }?;
            Some(pool)
        } else {
            None
        };
        Ok(Gpu {
            ordinal,
            arch: arch_for(cc.0, cc.1),
            cc,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            lt: OnceLock::new(),
            pool,
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The NVRTC target this device's kernels are compiled for (e.g. `sm_90a`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The compute capability `(major, minor)`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// The device name.
    pub fn name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "unknown".into())
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The device's one stream: every kernel, copy and allocation is ordered on it.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for all work queued on the stream.
    pub fn sync(&self) -> CudaResult<()> {
        Ok(self.stream.synchronize()?)
    }

    /// The kernel `name` of source `src`, compiled (or taken from the disk cache) for this
    /// device's arch and loaded once.
    pub fn function(&self, src: &'static KernelSource, name: &str) -> CudaResult<CudaFunction> {
        let module = {
            let mut mods = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match mods.get(src.name) {
                Some(m) => m.clone(),
                None => {
                    let cubin = nvrtc::compile_cached(src, &self.arch)?;
                    let m = self.ctx.load_module(Ptx::from_binary(cubin))?;
                    mods.insert(src.name, m.clone());
                    m
                }
            }
        };
        Ok(module.load_function(name)?)
    }

    /// The cuBLASLt handle and workspace of this device (created on first use).
    pub fn lt(&self) -> CudaResult<&Mutex<LtHandle>> {
        self.lt
            .get_or_init(|| LtHandle::new(self).map(Mutex::new))
            .as_ref()
            .map_err(|e| CudaError::Blas(e.to_string()))
    }

    /// `n` zeroed elements.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> CudaResult<CudaSlice<T>> {
        Ok(self.stream.alloc_zeros::<T>(n)?)
    }

    /// `n` elements, every byte 0xFF (NaN for f32/bf16/f16): tests poison outputs with it so a
    /// kernel that skips an element cannot pass.
    pub fn poisoned<T: DeviceRepr>(&self, n: usize) -> CudaResult<CudaSlice<T>> {
        let s = unsafe { self.stream.alloc::<T>(n) }?;
        if n > 0 {
            let (ptr, _g) = s.device_ptr(&self.stream);
            unsafe {
                dres::memset_d8_async(
                    ptr,
                    0xFF,
                    n * std::mem::size_of::<T>(),
                    self.stream.cu_stream(),
                )
            }?;
        }
        Ok(s)
    }

    /// `n` uninitialised elements (the caller writes all of them).
    ///
    /// # Safety
    /// Reading an element before a kernel writes it reads garbage.
    pub unsafe fn alloc<T: DeviceRepr>(&self, n: usize) -> CudaResult<CudaSlice<T>> {
        Ok(self.stream.alloc::<T>(n)?)
    }

    /// A device copy of `host`.
    pub fn htod<T: DeviceRepr>(&self, host: &[T]) -> CudaResult<CudaSlice<T>> {
        Ok(self.stream.clone_htod(host)?)
    }

    /// A host copy of `dev` (waits for the stream).
    pub fn dtoh<T: DeviceRepr + Default + Clone, S: DevicePtr<T>>(
        &self,
        dev: &S,
    ) -> CudaResult<Vec<T>> {
        Ok(self.stream.clone_dtoh(dev)?)
    }

    fn pool_attr(&self, attr: dsys::CUmemPool_attribute) -> u64 {
        let Some(pool) = self.pool else { return 0 };
        let mut v = 0u64;
        let r = unsafe { dres::mem_pool::get_attribute(pool, attr, &mut v as *mut u64 as *mut _) };
        if r.is_ok() {
            v
        } else {
            0
        }
    }

    /// Bytes handed out by the pool right now.
    pub fn used_bytes(&self) -> u64 {
        self.pool_attr(dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)
    }

    /// The most bytes handed out at once since the last `reset_peak`.
    pub fn peak_bytes(&self) -> u64 {
        self.pool_attr(dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH)
    }

    /// Restarts the peak-bytes count from the bytes in use now.
    pub fn reset_peak(&self) {
        if let Some(pool) = self.pool {
            let mut zero = 0u64;
            let _ = unsafe {
                dres::mem_pool::set_attribute(
                    pool,
                    dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                    &mut zero as *mut u64 as *mut _,
                )
            };
        }
    }
}

/// A 1-D launch: `ceil(n / block)` blocks of `block` threads.
pub fn grid_1d(n: usize, block: u32) -> LaunchConfig {
    let blocks = n.div_ceil(block as usize).max(1) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `rows` blocks of `block` threads, one block per row (row-wise kernels: norms, softmax).
pub fn grid_rows(rows: usize, block: u32, shared_mem_bytes: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.max(1) as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes,
    }
}

//! Safetensors weights of a model folder: `model.safetensors`, or the shards listed in
//! `model.safetensors.index.json`, memory-mapped and cast to the compute dtype one tensor at
//! a time (bf16/f16/f32/f64 on disk). Tensors are looked up by their HF names; a missing
//! tensor or a shape that disagrees with `config.json` is an error naming the file.

use crate::{Error, Result};
use half::{bf16, f16};
use lmf_runtime::{DType, Device, Tensor};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype as StDtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Name of the single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One memory-mapped shard with its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// tensor name → (dtype, shape, byte range of its data within the mmap)
    entries: HashMap<String, (StDtype, Vec<usize>, Range<usize>)>,
}

/// The safetensors files of a model folder, indexed by tensor name.
pub struct Weights {
    shards: Vec<Shard>,
    /// tensor name → shard index
    names: BTreeMap<String, usize>,
}

fn open_shard(path: &Path) -> Result<Shard> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the file is opened read-only; like every mmap reader we rely on nobody
    // truncating it while we run (safetensors' own loaders make the same assumption).
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&mmap)
        .map_err(|e| Error::file(path, format!("not a valid safetensors file ({e})")))?;
    // The header is parsed once, here: loads slice the mmap by the recorded byte ranges.
    let base = mmap.as_ptr() as usize;
    let entries = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let start = view.data().as_ptr() as usize - base;
            let range = start..start + view.data().len();
            (name, (view.dtype(), view.shape().to_vec(), range))
        })
        .collect();
    Ok(Shard {
        path: path.to_path_buf(),
        mmap,
        entries,
    })
}

impl Weights {
    /// Opens `dir/model.safetensors` or the shards named by `dir/model.safetensors.index.json`.
    pub fn from_dir(dir: &Path) -> Result<Weights> {
        let index = dir.join(INDEX_FILE);
        let files: Vec<PathBuf> = if index.is_file() {
            shard_files(&index)?
                .into_iter()
                .map(|f| dir.join(f))
                .collect()
        } else {
            let single = dir.join(SINGLE_FILE);
            if !single.is_file() {
                return Err(Error::missing(
                    dir.join(SINGLE_FILE),
                    format!("the model weights (neither {SINGLE_FILE} nor {INDEX_FILE})"),
                ));
            }
            vec![single]
        };
        Self::from_files(&files)
    }

    /// Opens the given safetensors files (shards of one model).
    pub fn from_files(files: &[PathBuf]) -> Result<Weights> {
        let shards = files
            .par_iter()
            .map(|f| {
                if f.is_file() {
                    open_shard(f)
                } else {
                    Err(Error::missing(f, "a weight shard listed in the index"))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut names = BTreeMap::new();
        for (i, s) in shards.iter().enumerate() {
            for name in s.entries.keys() {
                if let Some(j) = names.insert(name.clone(), i) {
                    return Err(Error::file(
                        &s.path,
                        format!("tensor `{name}` is also in {}", shards[j].path.display()),
                    ));
                }
            }
        }
        Ok(Weights { shards, names })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(|s| s.as_str())
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The files the weights came from (for messages).
    pub fn describe(&self) -> String {
        match self.shards.as_slice() {
            [one] => one.path.display().to_string(),
            many => format!(
                "{} shards in {}",
                many.len(),
                many[0].path.parent().unwrap_or(Path::new(".")).display()
            ),
        }
    }

    /// Shape of tensor `name` as stored.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let &i = self.names.get(name)?;
        Some(self.shards[i].entries[name].1.as_slice())
    }

    /// The stored bytes of tensor `name` with its safetensors dtype and shape: for copying
    /// tensors as they are, and for formats whose bytes are not numbers of their declared
    /// dtype (bitsandbytes packs 4-bit codes into any storage dtype).
    pub fn raw(&self, name: &str) -> Result<(StDtype, Vec<usize>, &[u8])> {
        let shard = self.shard_of(name)?;
        let (st_dtype, st_shape, range) = &shard.entries[name];
        Ok((*st_dtype, st_shape.clone(), &shard.mmap[range.clone()]))
    }

    /// The shard holding tensor `name`, or an error naming it and the files searched.
    fn shard_of(&self, name: &str) -> Result<&Shard> {
        let &i = self.names.get(name).ok_or_else(|| {
            Error::file(
                self.shards
                    .first()
                    .map(|s| s.path.as_path())
                    .unwrap_or(Path::new("weights")),
                format!("missing tensor `{name}` (in {})", self.describe()),
            )
        })?;
        Ok(&self.shards[i])
    }

    /// The path of the shard that holds tensor `name` (for error messages).
    pub fn path_of(&self, name: &str) -> Option<&Path> {
        self.names.get(name).map(|&i| self.shards[i].path.as_path())
    }

    /// Loads tensor `name` with its stored shape, cast to `dtype`.
    pub fn get(&self, name: &str, dtype: DType, device: Device) -> Result<Tensor> {
        let shape = self.shape(name).map(<[usize]>::to_vec).unwrap_or_default();
        self.load(name, &shape, dtype, device)
    }

    /// Loads tensor `name`, checks it has `shape`, and casts it to `dtype` on `device`.
    pub fn load(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        let shard = self.shard_of(name)?;
        let (st_dtype, st_shape, range) = &shard.entries[name];
        if st_shape.as_slice() != shape {
            return Err(Error::file(
                &shard.path,
                format!("tensor `{name}` has shape {st_shape:?} but config.json implies {shape:?}"),
            ));
        }
        let t = decode(&shard.mmap[range.clone()], *st_dtype, shape, device)
            .map_err(|m| Error::file(&shard.path, format!("tensor `{name}`: {m}")))?;
        Ok(if t.dtype() == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        })
    }
}

/// Builds a tensor from little-endian bytes (which need not be aligned in the mmap).
fn decode(
    bytes: &[u8],
    dtype: StDtype,
    shape: &[usize],
    device: Device,
) -> std::result::Result<Tensor, String> {
    let n: usize = shape.iter().product();
    let width = dtype.bitsize() / 8;
    if bytes.len() != n * width {
        return Err(format!("{} bytes for {n} {dtype:?} elements", bytes.len()));
    }
    let tensor = match dtype {
        StDtype::F32 => Tensor::from_vec(le::<4, f32>(bytes, f32::from_le_bytes), shape, device),
        StDtype::F64 => Tensor::from_vec(le::<8, f64>(bytes, f64::from_le_bytes), shape, device),
        StDtype::BF16 => Tensor::from_vec(le::<2, bf16>(bytes, bf16::from_le_bytes), shape, device),
        StDtype::F16 => Tensor::from_vec(le::<2, f16>(bytes, f16::from_le_bytes), shape, device),
        StDtype::I64 => Tensor::from_vec(le::<8, i64>(bytes, i64::from_le_bytes), shape, device),
        StDtype::I32 => Tensor::from_vec(le::<4, i32>(bytes, i32::from_le_bytes), shape, device),
        StDtype::U8 => Tensor::from_vec(bytes.to_vec(), shape, device),
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    tensor.map_err(|e| e.to_string())
}

/// Decodes `W`-byte little-endian elements in parallel chunks.
fn le<const W: usize, T: Send>(bytes: &[u8], f: fn([u8; W]) -> T) -> Vec<T> {
    bytes
        .par_chunks(W * 4096)
        .flat_map_iter(|c| {
            c.chunks_exact(W)
                .map(move |b| f(b.try_into().unwrap_or([0; W])))
        })
        .collect()
}

/// The distinct shard file names of an index, in first-use order.
fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(index, format!("invalid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::file(index, "missing object `weight_map`"))?;
    let mut files: Vec<String> = vec![];
    for (name, f) in map {
        let f = f.as_str().ok_or_else(|| {
            Error::file(index, format!("weight_map[`{name}`] must be a file name"))
        })?;
        if f.contains('/') || f.contains('\\') || f.starts_with("..") {
            return Err(Error::file(
                index,
                format!("shard name `{f}` must be a plain file name"),
            ));
        }
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    Ok(files)
}

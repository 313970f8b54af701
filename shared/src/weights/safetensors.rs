//! A streaming reader for the safetensors format (an 8-byte little-endian header length, a
//! JSON header of `name -> {dtype, shape, data_offsets}`, then the raw data): tensors are read
//! one at a time, so loading a model needs memory for one copy of the weights plus one
//! tensor, not two copies (exercise 5.6 loads GPT-2 XL, 6.4 GB in float32).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Deserialize)]
pub struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<i64>,
    pub data_offsets: (u64, u64),
}

impl TensorInfo {
    /// The LibTorch type of the stored `dtype`.
    pub fn kind(&self) -> Result<Kind> {
        Ok(match self.dtype.as_str() {
            "F32" => Kind::Float,
            "F16" => Kind::Half,
            "BF16" => Kind::BFloat16,
            "F64" => Kind::Double,
            "I64" => Kind::Int64,
            "I32" => Kind::Int,
            "U8" => Kind::Uint8,
            "BOOL" => Kind::Bool,
            other => bail!("the dtype {other} is not supported"),
        })
    }

    /// The bytes the shape and dtype call for; an error for negative sizes or a product that
    /// overflows.
    pub fn byte_size(&self) -> Result<u64> {
        let element = self.kind()?.elt_size_in_bytes() as u64;
        self.shape
            .iter()
            .try_fold(element, |acc, &n| u64::try_from(n).ok().and_then(|n| acc.checked_mul(n)))
            .with_context(|| format!("the shape {:?} is not a valid size", self.shape))
    }
}

/// An open safetensors file: its tensor directory, read lazily.
#[derive(Debug)]
pub struct SafeTensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl SafeTensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let bad = || format!("{} is not a valid safetensors file", path.display());
        let file_len = file.metadata()?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len).with_context(bad)?;
        let header_len = u64::from_le_bytes(len);
        ensure!(header_len <= file_len.saturating_sub(8) && header_len < 100_000_000, "{}", bad());
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).with_context(bad)?;
        let mut entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header).with_context(bad)?;
        entries.remove("__metadata__");
        let mut tensors = BTreeMap::new();
        let data_start = 8 + header_len;
        for (name, value) in entries {
            let info: TensorInfo = serde_json::from_value(value).with_context(bad)?;
            let (begin, end) = info.data_offsets;
            ensure!(
                begin <= end && data_start.checked_add(end).is_some_and(|end| end <= file_len),
                "{}: tensor {name} lies outside the file",
                bad()
            );
            let bytes = info.byte_size().with_context(|| format!("{}: tensor {name}", bad()))?;
            ensure!(
                bytes == end - begin,
                "{}: tensor {name} has {} bytes for the shape {:?}",
                bad(),
                end - begin,
                info.shape
            );
            tensors.insert(name, info);
        }
        Ok(Self { path: path.to_path_buf(), file, data_start, tensors })
    }

    /// Reads one tensor into memory (on the CPU, in its stored dtype).
    pub fn read(&mut self, name: &str) -> Result<Tensor> {
        let info = self.tensors.get(name).with_context(|| format!("{} has no tensor {name}", self.path.display()))?;
        let kind = info.kind()?; // checked by `open`, as the size is
        let (begin, end) = info.data_offsets;
        let mut bytes = vec![0u8; usize::try_from(end - begin)?];
        self.file.seek(SeekFrom::Start(self.data_start + begin))?;
        self.file.read_exact(&mut bytes).with_context(|| format!("reading {name} from {}", self.path.display()))?;
        Ok(Tensor::f_from_data_size(&bytes, &info.shape, kind)?)
    }
}

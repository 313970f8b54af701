//! Reading a state dict written by PyTorch's `torch.save(model.state_dict(), "model.pth")`,
//! as the book does in section 5.4, without Python.
//!
//! Such a file is a zip archive: `<name>/data.pkl` (a pickle of the `OrderedDict`) and one
//! `<name>/data/<key>` entry of raw little-endian bytes per storage. The pickle refers to
//! the storages through persistent ids `("storage", torch.FloatStorage, key, location, numel)`
//! and rebuilds each tensor with `torch._utils._rebuild_tensor_v2(storage, offset, size,
//! stride, ...)`. This reader runs the subset of the pickle machine those files use and
//! nothing else: any other callable is kept as an opaque value, never executed.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A call to a callable this reader does not interpret.
    Opaque,
    Storage {
        key: String,
        kind: Kind,
    },
    Tensor {
        key: String,
        kind: Kind,
        offset: i64,
        size: Vec<i64>,
        stride: Vec<i64>,
    },
    Mark,
}

/// How deeply containers may nest (a state dict needs 4 levels) and how many values the
/// machine may create in all (memo lookups copy values): a malformed or hostile pickle is
/// refused instead of exhausting the stack or the memory.
const MAX_DEPTH: usize = 64;
const MAX_VALUES: usize = 1 << 22;
/// The largest `data.pkl` read (GPT-2 XL's is about 100 KB).
const MAX_PICKLE_BYTES: u64 = 1 << 26;

impl Value {
    /// The number of values in this one (itself included).
    fn count(&self) -> usize {
        1 + self.children().into_iter().map(Value::count).sum::<usize>()
    }

    /// Whether containers nest more than `limit` levels deep.
    fn deeper_than(&self, limit: usize) -> bool {
        let children = self.children();
        !children.is_empty() && (limit == 0 || children.iter().any(|child| child.deeper_than(limit - 1)))
    }

    fn children(&self) -> Vec<&Value> {
        match self {
            Value::Tuple(items) | Value::List(items) => items.iter().collect(),
            Value::Dict(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        }
    }

    fn int(&self) -> Result<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            other => bail!("expected an integer, found {other:?}"),
        }
    }

    fn ints(&self) -> Result<Vec<i64>> {
        match self {
            Value::Tuple(items) | Value::List(items) => items.iter().map(Value::int).collect(),
            other => bail!("expected a tuple of integers, found {other:?}"),
        }
    }
}

fn storage_kind(name: &str) -> Result<Kind> {
    Ok(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        other => bail!("unsupported storage type torch.{other}"),
    })
}

/// The named tensors of a `torch.save`d state dict.
pub fn read_torch_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(File::open(path)?).context("not a zip archive (the format of torch.save)")?;
    let pkl_name = zip
        .file_names()
        .filter_map(|name| name.ok().map(|n| n.to_string()))
        .find(|name| name.ends_with("/data.pkl") || name == "data.pkl")
        .context("the archive has no data.pkl")?;
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or_default().to_string();
    let mut pickle = Vec::new();
    zip.by_name(&pkl_name)?.take(MAX_PICKLE_BYTES + 1).read_to_end(&mut pickle)?;
    ensure!(pickle.len() as u64 <= MAX_PICKLE_BYTES, "data.pkl is larger than {MAX_PICKLE_BYTES} bytes");
    let root = Machine::default().run(&pickle)?;
    let Value::Dict(entries) = root else { bail!("the pickle holds no dictionary of tensors") };
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let Value::Str(name) = name else { bail!("a state dict key is not a string: {name:?}") };
        let Value::Tensor { key, kind, offset, size, stride } = value else {
            continue; // e.g. `_metadata` or non-tensor entries
        };
        if !storages.contains_key(&key) {
            let mut bytes = Vec::new();
            zip.by_name(&format!("{prefix}data/{key}"))
                .with_context(|| format!("the archive lacks the storage of {name}"))?
                .read_to_end(&mut bytes)?;
            let numel = (bytes.len() / kind.elt_size_in_bytes()) as i64;
            storages.insert(key.clone(), Tensor::f_from_data_size(&bytes, &[numel], kind)?);
        }
        let storage = &storages[&key];
        check_view(&name, offset, &size, &stride, storage.size()[0])?;
        tensors.push((name, storage.f_as_strided(&size, &stride, offset)?.contiguous()));
    }
    Ok(tensors)
}

/// Checks that a `_rebuild_tensor_v2` view (`offset`, `size`, `stride`) lies inside a storage
/// of `storage_len` elements, with arithmetic that cannot overflow.
fn check_view(name: &str, offset: i64, size: &[i64], stride: &[i64], storage_len: i64) -> Result<()> {
    ensure!(size.len() == stride.len(), "tensor {name} has {} sizes but {} strides", size.len(), stride.len());
    ensure!(offset >= 0, "tensor {name} has the negative storage offset {offset}");
    ensure!(size.iter().chain(stride).all(|&n| n >= 0), "tensor {name} has a negative size or stride");
    if size.contains(&0) {
        return Ok(());
    }
    // The last element's index: offset + sum((size - 1) * stride).
    let last = size.iter().zip(stride).try_fold(offset, |acc, (&n, &st)| (n - 1).checked_mul(st)?.checked_add(acc));
    ensure!(last.is_some_and(|last| last < storage_len), "tensor {name} reaches past its storage");
    Ok(())
}

#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    /// Values created so far (see [`MAX_VALUES`]).
    created: usize,
}

impl Machine {
    /// Pushes `value`, counting `values` against the budget and refusing deep nesting.
    fn push_counted(&mut self, value: Value, values: usize) -> Result<()> {
        self.created += values;
        ensure!(self.created <= MAX_VALUES, "malformed pickle: more than {MAX_VALUES} values");
        ensure!(!value.deeper_than(MAX_DEPTH), "malformed pickle: containers nested more than {MAX_DEPTH} deep");
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().context("malformed pickle: the stack is empty")
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).context("malformed pickle: no mark")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    /// SETITEM(S) and APPEND(S): key/value pairs into the dictionary on top of the stack,
    /// or items into the list there (anything else leaves the top as it is).
    fn add_to_top(&mut self, items: Vec<Value>) -> Result<()> {
        ensure!(
            !items.iter().any(|item| item.deeper_than(MAX_DEPTH - 1)),
            "malformed pickle: containers nested more than {MAX_DEPTH} deep"
        );
        match self.top_mut()? {
            Value::Dict(entries) => {
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    entries.push((k, v));
                }
            }
            Value::List(list) => list.extend(items),
            _ => {}
        }
        Ok(())
    }

    fn top_mut(&mut self) -> Result<&mut Value> {
        self.stack.last_mut().context("malformed pickle: the stack is empty")
    }

    fn run(mut self, data: &[u8]) -> Result<Value> {
        let mut r = Reader { data, pos: 0 };
        loop {
            let op = r.u8()?;
            match op {
                0x80 => {
                    r.take(1)?; // PROTO
                }
                b'.' => return self.pop(), // STOP
                b'c' => {
                    let module = r.line()?;
                    let name = r.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_counted(Value::Tuple(items), 1)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    ensure!(self.stack.len() >= n, "malformed pickle: short tuple");
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_counted(Value::Tuple(items), 1)?;
                }
                b'q' => {
                    let key = r.u8()? as u32;
                    self.memo.insert(key, self.stack.last().cloned().context("malformed pickle")?);
                }
                b'r' => {
                    let key = r.u32()?;
                    self.memo.insert(key, self.stack.last().cloned().context("malformed pickle")?);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                    let value = self.memo.get(&key).context("malformed pickle: unknown memo entry")?;
                    let values = value.count();
                    ensure!(self.created + values <= MAX_VALUES, "malformed pickle: more than {MAX_VALUES} values");
                    let value = value.clone();
                    self.push_counted(value, values)?;
                }
                b'X' => {
                    let len = r.u32()? as usize;
                    self.stack.push(Value::Str(String::from_utf8(r.take(len)?.to_vec())?));
                }
                0x8c => {
                    let len = r.u8()? as usize;
                    self.stack.push(Value::Str(String::from_utf8(r.take(len)?.to_vec())?));
                }
                b'J' => self.stack.push(Value::Int(i32::from_le_bytes(r.take(4)?.try_into()?) as i64)),
                b'K' => self.stack.push(Value::Int(r.u8()? as i64)),
                b'M' => self.stack.push(Value::Int(u16::from_le_bytes(r.take(2)?.try_into()?) as i64)),
                0x8a => {
                    let len = r.u8()? as usize;
                    ensure!(len <= 8, "integer too large");
                    let bytes = r.take(len)?;
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                    buf[..len].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    r.take(8)?;
                    self.stack.push(Value::Float)
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool),
                0x89 => self.stack.push(Value::Bool),
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_load(pid)?);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = reduce(callable, args)?;
                    self.push_counted(value, 1)?;
                }
                b'b' => {
                    self.pop()?; // BUILD: the state (e.g. an OrderedDict's `_metadata`) is not needed
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.add_to_top(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.add_to_top(items)?;
                }
                b'a' => {
                    let value = self.pop()?;
                    self.add_to_top(vec![value])?;
                }
                b'e' => {
                    let values = self.pop_mark()?;
                    self.add_to_top(values)?;
                }
                other => bail!("unsupported pickle opcode 0x{other:02x} at byte {}", r.pos - 1),
            }
        }
    }
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else { bail!("unexpected persistent id {pid:?}") };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(_, storage), Value::Str(key), ..] if tag == "storage" => {
            Ok(Value::Storage { key: key.clone(), kind: storage_kind(storage)? })
        }
        _ => bail!("unexpected persistent id {items:?}"),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &callable else { return Ok(Value::Opaque) };
    Ok(match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Value::Dict(Vec::new()),
        ("torch._utils", "_rebuild_tensor_v2") => {
            let Value::Tuple(args) = args else { bail!("_rebuild_tensor_v2 without arguments") };
            let [Value::Storage { key, kind }, offset, size, stride, ..] = args.as_slice() else {
                bail!("unexpected _rebuild_tensor_v2 arguments {args:?}")
            };
            Value::Tensor {
                key: key.clone(),
                kind: *kind,
                offset: offset.int()?,
                size: size.ints()?,
                stride: stride.ints()?,
            }
        }
        _ => Value::Opaque,
    })
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.pos + n <= self.data.len(), "malformed pickle: truncated");
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn line(&mut self) -> Result<String> {
        let end = self.data[self.pos..].iter().position(|&b| b == b'\n').context("malformed pickle")?;
        let line = String::from_utf8(self.data[self.pos..self.pos + end].to_vec())?;
        self.pos += end + 1;
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_outside_their_storage_are_refused() {
        check_view("ok", 2, &[2, 3], &[3, 1], 8).unwrap();
        check_view("empty", 0, &[0, 5], &[5, 1], 0).unwrap();
        for (offset, size, stride, needle) in [
            (0, &[2, 3][..], &[3][..], "has 2 sizes but 1 strides"),
            (-1, &[2], &[1], "negative storage offset -1"),
            (0, &[-2], &[1], "negative size or stride"),
            (0, &[2], &[-1], "negative size or stride"),
            (3, &[2, 3], &[3, 1], "reaches past its storage"),
            (0, &[i64::MAX, 2], &[i64::MAX, 1], "reaches past its storage"),
            (i64::MAX, &[2], &[1], "reaches past its storage"),
        ] {
            let err = check_view("w", offset, size, stride, 8).unwrap_err().to_string();
            assert!(err.contains(needle), "{offset} {size:?} {stride:?}: {err}");
        }
    }

    #[test]
    fn deeply_nested_or_exploding_pickles_are_refused() {
        // PROTO 2, an empty tuple wrapped in 100 one-element tuples, STOP.
        let mut deep = vec![0x80, 2, b')'];
        deep.extend([0x85; 100]);
        deep.push(b'.');
        let err = Machine::default().run(&deep).unwrap_err().to_string();
        assert!(err.contains("nested more than 64 deep"), "{err}");
        // A list of 4,096 items memoised, then pushed back 2,000 times: 8 million copies.
        let mut wide = vec![0x80, 2, b']', b'('];
        wide.extend([b'N'; 4096]);
        wide.extend([b'e', b'q', 0]);
        for _ in 0..2000 {
            wide.extend([b'h', 0]);
        }
        wide.push(b'.');
        let err = Machine::default().run(&wide).unwrap_err().to_string();
        assert!(err.contains("more than 4194304 values"), "{err}");
    }
}

//! Section 7.2: the instruction data set. Records of `instruction` / `input` / `output`
//! (the Alpaca format), read from the book's `instruction-data.json`, Stanford Alpaca's
//! 52k file (`--data alpaca`, exercise 7.3), a URL or a file of the user's, checked record by
//! record, and split in file order into 85 % training, 10 % test and the rest validation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::data::{DataLocator, DataSet, ALPACA_DATA, INSTRUCTION_DATA};

/// One instruction example; `model_response` is what a fine-tuned model answered (section
/// 7.7), present in the files that `evaluate` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionRecord {
    pub instruction: String,
    /// Optional context for the instruction; empty when there is none.
    pub input: String,
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_response: Option<String>,
}

impl InstructionRecord {
    pub fn new(instruction: &str, input: &str, output: &str) -> Self {
        Self { instruction: instruction.into(), input: input.into(), output: output.into(), model_response: None }
    }
}

/// The file `--data` names: `alpaca` (Stanford Alpaca's 52k records), an `http(s)://` URL
/// (downloaded into the data cache), a file, or by default the book's data set.
pub fn locate(locator: &DataLocator) -> Result<PathBuf> {
    let explicit = locator.explicit.as_deref().and_then(Path::to_str);
    let set = match explicit {
        Some("alpaca") => ALPACA_DATA,
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => DataSet::from_url(url),
        _ => return Ok(locator.locate(&INSTRUCTION_DATA)?),
    };
    Ok(locator.without_explicit().locate(&set)?)
}

/// Reads and checks the records of `path` (a JSON array of objects).
pub fn load(path: &Path) -> Result<Vec<InstructionRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a usable instruction data file", path.display()))
}

/// Parses a JSON array of instruction records. Every record needs string fields
/// `instruction`, `input` and `output` (`model_response`, if present, must be a string too);
/// other fields are ignored. All problems are reported, each with its record's index.
pub fn parse(text: &str) -> Result<Vec<InstructionRecord>> {
    parse_array(text, record)
}

/// A JSON array of records, each read by `read`; every record's problem is reported with its
/// index (the first ten, and how many more).
pub(crate) fn parse_array<T>(text: &str, read: impl Fn(&Value) -> Result<T, String>) -> Result<Vec<T>> {
    let value: Value = serde_json::from_str(text).context("invalid JSON")?;
    let Value::Array(items) = value else {
        bail!("expected a JSON array of records, found {}", kind(&value));
    };
    let mut problems = Vec::new();
    let mut records = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match read(item) {
            Ok(record) => records.push(record),
            Err(problem) => problems.push(format!("record {index}: {problem}")),
        }
    }
    if !problems.is_empty() {
        const SHOWN: usize = 10;
        let more = problems.len().saturating_sub(SHOWN);
        let mut message = format!("{} of {} records are malformed:\n  ", problems.len(), items.len());
        message += &problems[..problems.len().min(SHOWN)].join("\n  ");
        if more > 0 {
            message += &format!("\n  ... and {more} more");
        }
        bail!(message);
    }
    if records.is_empty() {
        bail!("the file holds no records");
    }
    Ok(records)
}

/// An instruction record's fields of `item`.
pub(crate) fn record(item: &Value) -> std::result::Result<InstructionRecord, String> {
    Ok(InstructionRecord {
        instruction: string_field(item, "instruction", true)?.unwrap_or_default(),
        input: string_field(item, "input", true)?.unwrap_or_default(),
        output: string_field(item, "output", true)?.unwrap_or_default(),
        model_response: string_field(item, "model_response", false)?,
    })
}

/// The string field `name` of the object `item`; a missing one is `None` unless `required`.
pub(crate) fn string_field(item: &Value, name: &str, required: bool) -> std::result::Result<Option<String>, String> {
    let Value::Object(fields) = item else {
        return Err(format!("expected an object, found {}", kind(item)));
    };
    match fields.get(name) {
        Some(Value::String(text)) => Ok(Some(text.clone())),
        None if !required => Ok(None),
        None => Err(format!("the field '{name}' is missing")),
        Some(other) => Err(format!("the field '{name}' is {}, not a string", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The book's split, in file order (of instruction records, or of the DPO notebook's
/// preference records, which it splits the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct Splits<T = InstructionRecord> {
    pub train: Vec<T>,
    pub test: Vec<T>,
    pub validation: Vec<T>,
}

impl<T> Splits<T> {
    /// `int(n * 0.85)` training records, then `int(n * 0.1)` test records, then the rest for
    /// validation (935 / 110 / 55 of the book's 1,100).
    pub fn new(mut records: Vec<T>) -> Self {
        let n = records.len();
        let train_len = (n as f64 * 0.85) as usize;
        let test_len = (n as f64 * 0.1) as usize;
        let validation = records.split_off(train_len + test_len);
        let test = records.split_off(train_len);
        Self { train: records, test, validation }
    }
}

impl<T: Serialize> Splits<T> {
    /// Writes `train.json`, `test.json` and `validation.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        for (name, records) in [("train", &self.train), ("test", &self.test), ("validation", &self.validation)] {
            save(&dir.join(format!("{name}.json")), records)?;
        }
        Ok(())
    }
}

/// Writes records as an indented JSON array, as the book's `json.dump(..., indent=4)`.
pub fn save(path: &Path, records: &[impl Serialize]) -> Result<()> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    records.serialize(&mut serializer)?;
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

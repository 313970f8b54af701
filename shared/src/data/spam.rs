//! Section 6.2: the SMS Spam Collection as the book prepares it: parsed as `label<TAB>text`
//! the way `pandas.read_csv(sep="\t", header=None)` reads it, balanced to as many "ham" as
//! "spam" messages, shuffled and split 70/10/20, saved as CSV files.
//!
//! Quoting: as pandas (and Python's `csv` module) do, a text that *starts* with `"` is a
//! quoted field: it ends at the next lone `"`, `""` inside it stands for one quote, and it
//! may run over line breaks (one record of the file does, so 5,574 lines hold 5,572
//! messages). Characters after the closing quote are kept as they are. A `"` anywhere else is
//! an ordinary character.
//!
//! The draws are numpy's, so that the files equal the book's: `DataFrame.sample(n,
//! random_state=123)` takes the first `n` of `RandomState(123).permutation(len)`, and the
//! legacy `permutation` is a Fisher-Yates shuffle driven by mt19937 ([`NumpyRandomState`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::core::torch_rng::Mt19937;

/// 0 = "ham" (not spam), 1 = "spam", the book's `{"ham": 0, "spam": 1}`.
pub type Label = i64;

pub const LABEL_NAMES: [&str; 2] = ["ham", "spam"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub label: Label,
    pub text: String,
}

/// What parsing found: the messages and, with their line numbers, the records it could not
/// use.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub messages: Vec<Message>,
    pub malformed: Vec<(usize, String)>,
}

/// Parses `label<TAB>text` records as `pandas.read_csv(sep="\t", header=None)` does.
pub fn parse_collection(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for (line, fields) in records(text, '\t') {
        match fields.as_slice() {
            [label, text] => match LABEL_NAMES.iter().position(|name| name == label) {
                Some(label) => parsed.messages.push(Message { label: label as Label, text: text.clone() }),
                None => parsed.malformed.push((line, format!("unknown label {label:?} (expected ham or spam)"))),
            },
            [only] if only.is_empty() => {} // a blank line
            other => parsed.malformed.push((line, format!("{} tab-separated fields, expected 2", other.len()))),
        }
    }
    parsed
}

/// The records of a `delimiter`-separated file with pandas' quoting, each with the line it
/// starts on.
fn records(text: &str, delimiter: char) -> Vec<(usize, Vec<String>)> {
    #[derive(PartialEq)]
    enum State {
        StartField,
        InField,
        InQuoted,
        QuoteInQuoted,
    }
    let mut records = Vec::new();
    let (mut fields, mut field, mut state) = (Vec::new(), String::new(), State::StartField);
    let (mut line, mut record_line) = (1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let newline = c == '\n' || c == '\r';
        if c == '\r' && chars.peek() == Some(&'\n') {
            chars.next();
        }
        match state {
            State::InQuoted if c == '"' => state = State::QuoteInQuoted,
            State::InQuoted => field.push(if c == '\r' { '\n' } else { c }),
            State::QuoteInQuoted if c == '"' => {
                field.push('"');
                state = State::InQuoted;
            }
            State::StartField if c == '"' => state = State::InQuoted,
            _ if c == delimiter => {
                fields.push(std::mem::take(&mut field));
                state = State::StartField;
            }
            _ if newline => {
                fields.push(std::mem::take(&mut field));
                records.push((record_line, std::mem::take(&mut fields)));
                state = State::StartField;
                record_line = line + 1;
            }
            _ => {
                field.push(c);
                state = State::InField;
            }
        }
        if newline {
            line += 1;
        }
    }
    if !field.is_empty() || !fields.is_empty() || state == State::InQuoted {
        fields.push(field);
        records.push((record_line, fields));
    }
    records
}

/// numpy's legacy `RandomState(seed)` for the two draws the book makes through pandas.
pub struct NumpyRandomState(Mt19937);

impl NumpyRandomState {
    pub fn new(seed: u32) -> Self {
        Self(Mt19937::new(seed as u64))
    }

    /// A uniform integer in `0..=max` (numpy's `random_interval`: masked rejection sampling).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        loop {
            let value = if max <= u32::MAX as u64 { self.0.next_u32() as u64 & mask } else { self.0.next_u64() & mask };
            if value <= max {
                return value;
            }
        }
    }

    /// `RandomState.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
        items
    }
}

/// `DataFrame.sample(n, random_state=seed)`: `n` rows in the order numpy draws them.
pub fn sample<T: Clone>(rows: &[T], n: usize, seed: u32) -> Vec<T> {
    NumpyRandomState::new(seed).permutation(rows.len()).into_iter().take(n).map(|i| rows[i].clone()).collect()
}

/// Section 6.2's `create_balanced_dataset`: as many ham messages (drawn with `seed`) as
/// there are spam messages, ham first.
pub fn balance(messages: &[Message], seed: u32) -> Vec<Message> {
    let (spam, ham): (Vec<Message>, Vec<Message>) = messages.iter().cloned().partition(|m| m.label == 1);
    let mut balanced = sample(&ham, spam.len(), seed);
    balanced.extend(spam);
    balanced
}

/// Section 6.2's `random_split`: shuffles with `seed`, then takes `train_frac` of the rows
/// for training, `validation_frac` for validation and the rest for testing.
pub fn random_split(
    messages: &[Message],
    train_frac: f64,
    validation_frac: f64,
    seed: u32,
) -> (Vec<Message>, Vec<Message>, Vec<Message>) {
    let shuffled = sample(messages, messages.len(), seed);
    let train_end = (shuffled.len() as f64 * train_frac) as usize;
    let validation_end = train_end + (shuffled.len() as f64 * validation_frac) as usize;
    (shuffled[..train_end].to_vec(), shuffled[train_end..validation_end].to_vec(), shuffled[validation_end..].to_vec())
}

/// Writes `Label,Text` rows as `DataFrame.to_csv(index=None)` does (fields holding a comma,
/// a quote or a line break are quoted, quotes doubled).
pub fn write_csv(path: &Path, messages: &[Message]) -> Result<()> {
    let mut out = String::from("Label,Text\n");
    for message in messages {
        let text = &message.text;
        if text.contains([',', '"', '\n', '\r']) {
            let _ = writeln!(out, "{},\"{}\"", message.label, text.replace('"', "\"\""));
        } else {
            let _ = writeln!(out, "{},{text}", message.label);
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Reads a file written by [`write_csv`] (or by the book's pandas code).
pub fn read_csv(path: &Path) -> Result<Vec<Message>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut messages = Vec::new();
    for (line, record) in records(&text, ',').into_iter().skip(1) {
        let [label, text] = record.as_slice() else {
            bail!("{}:{line}: expected Label,Text", path.display());
        };
        let label: Label = label.parse().ok().filter(|l| (0..2).contains(l)).with_context(|| {
            format!("{}:{line}: the label must be 0 (ham) or 1 (spam), got {label:?}", path.display())
        })?;
        messages.push(Message { label, text: text.clone() });
    }
    Ok(messages)
}

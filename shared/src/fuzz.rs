//! Mutation testing of the loaders on stable Rust: from a valid file, a stream of broken
//! ones (truncations, bit flips, random bytes, chunks cut or repeated, absurd numbers where
//! the file has digits), each fed to a loader that must answer `Ok` or an error, never panic.
//! An abort (an allocation the loader should have refused) ends the test process, which
//! fails the test as surely.
//!
//! The inputs are reproducible: case `i` of a seed file is always the same bytes. A case that
//! panics is written to `target/fuzz-failures/` for replay. `FUZZ_CASES=N` sets the number of
//! cases per loader (default [`DEFAULT_CASES`]).

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Cases per loader when `FUZZ_CASES` is not set.
pub const DEFAULT_CASES: usize = 2000;

/// Cases per loader: `FUZZ_CASES` or [`DEFAULT_CASES`].
pub fn cases_from_env() -> usize {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES)
}

/// SplitMix64: a small seeded generator, enough to pick mutations (and random test texts).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Numbers a file should never be trusted with.
const ABSURD_NUMBERS: [&str; 12] = [
    "0",
    "-1",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551615",
    "4294967296",
    "99999999999999999999999999",
    "1e308",
    "-1e308",
    "NaN",
    "0.5",
    "2147483648",
];

/// One broken input and how it was made.
pub struct Case {
    pub label: String,
    pub bytes: Vec<u8>,
}

/// `cases` inputs made from the valid file `seed`: a quarter are truncations (every length
/// when the file is that short, else evenly spaced ones), the rest random mutations.
pub fn mutations(seed: &[u8], cases: usize) -> Vec<Case> {
    let truncations = (cases / 4).max(1).min(seed.len() + 1);
    let mut out: Vec<Case> = (0..truncations)
        .map(|i| {
            let len = if truncations > seed.len() { i } else { i * seed.len() / truncations };
            Case { label: format!("truncated to {len} bytes"), bytes: seed[..len].to_vec() }
        })
        .collect();
    let digit_runs = digit_runs(seed);
    for i in out.len()..cases {
        let mut rng = Rng(i as u64 ^ 0x5eed);
        let mut bytes = seed.to_vec();
        let label = match rng.below(6) {
            0 => {
                let flips = 1 + rng.below(8);
                for _ in 0..flips {
                    let at = rng.below(bytes.len());
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte ^= 1 << rng.below(8);
                    }
                }
                format!("{flips} bits flipped")
            }
            1 => {
                let len = rng.below(512);
                bytes = (0..len).map(|_| rng.next() as u8).collect();
                format!("{len} random bytes")
            }
            2 => {
                let at = rng.below(bytes.len());
                let len = 1 + rng.below(64);
                bytes.drain(at..(at + len).min(bytes.len()));
                format!("{len} bytes cut at {at}")
            }
            3 => {
                let at = rng.below(bytes.len());
                let chunk: Vec<u8> = bytes[at..(at + 1 + rng.below(64)).min(bytes.len())].to_vec();
                let times = 1 + rng.below(4);
                for _ in 0..times {
                    bytes.splice(at..at, chunk.iter().copied());
                }
                format!("{} bytes at {at} repeated {times} times", chunk.len())
            }
            4 => {
                let at = rng.below(bytes.len());
                let special = [0u8, 0xff, b'"', b'{', b'}', b'[', b'9', b'-', b'\n', b'\t', 0x80][rng.below(11)];
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = special;
                }
                format!("byte {at} set to 0x{special:02x}")
            }
            _ if !digit_runs.is_empty() => {
                let (start, end) = digit_runs[rng.below(digit_runs.len())];
                let number = ABSURD_NUMBERS[rng.below(ABSURD_NUMBERS.len())];
                bytes.splice(start..end, number.bytes());
                format!("number at {start} set to {number}")
            }
            _ => {
                bytes.truncate(rng.below(bytes.len() + 1));
                format!("truncated to {} bytes", bytes.len())
            }
        };
        out.push(Case { label, bytes });
    }
    out
}

/// Byte ranges of the runs of ASCII digits in `data` (where headers and configs keep numbers).
fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, byte) in data.iter().enumerate() {
        match (byte.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, data.len()));
    }
    runs
}

/// What a loader made of its cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzSummary {
    pub cases: usize,
    pub accepted: usize,
    pub refused: usize,
}

impl std::fmt::Display for FuzzSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cases: {} loaded, {} refused with an error, 0 panics", self.cases, self.accepted, self.refused)
    }
}

/// Feeds every case of `seed` to `load`; panics (after all cases ran) listing the cases that
/// panicked, whose bytes are saved under `target/fuzz-failures/<name>-<case>.bin`. `load`
/// must accept `seed` itself.
pub fn check_loader<T, E: std::fmt::Display>(
    name: &str,
    seed: &[u8],
    cases: usize,
    mut load: impl FnMut(&[u8]) -> Result<T, E>,
) -> FuzzSummary {
    if let Err(err) = load(seed) {
        panic!("{name}: the valid seed input is refused: {err}");
    }
    let mut summary = FuzzSummary { cases: 0, accepted: 0, refused: 0 };
    let mut panics = String::new();
    for (i, case) in mutations(seed, cases).into_iter().enumerate() {
        summary.cases += 1;
        match catch_unwind(AssertUnwindSafe(|| load(&case.bytes).is_ok())) {
            Ok(true) => summary.accepted += 1,
            Ok(false) => summary.refused += 1,
            Err(payload) => {
                let message = crate::core::panic_message(payload.as_ref()).unwrap_or_default();
                let dir = crate::workspace_root().join("target/fuzz-failures");
                let file = dir.join(format!("{name}-{i}.bin"));
                let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &case.bytes));
                let _ = writeln!(panics, "  case {i} ({}): {message} [{}]", case.label, file.display());
            }
        }
    }
    assert!(panics.is_empty(), "{name}: inputs that panicked instead of giving an error:\n{panics}");
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_reproducible_and_varied() {
        let seed = br#"{"vocab_size": 50257, "n_positions": 1024}"#;
        let a = mutations(seed, 200);
        let b = mutations(seed, 200);
        assert_eq!(a.len(), 200);
        assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes && x.label == y.label));
        // Every truncation length of a short file, then mutations of each kind.
        assert_eq!(
            a[..seed.len() + 1].iter().map(|c| c.bytes.len()).collect::<Vec<_>>(),
            (0..=seed.len()).collect::<Vec<_>>()
        );
        for kind in ["bits flipped", "random bytes", "bytes cut", "repeated", "set to 0x", "number at"] {
            assert!(a.iter().any(|c| c.label.contains(kind)), "no '{kind}' case");
        }
        assert!(a.iter().any(|c| c.bytes.windows(19).any(|w| w == b"9223372036854775807")));
        assert_eq!(digit_runs(b"a12b3"), [(1, 3), (4, 5)]);
    }

    #[test]
    fn a_panicking_loader_is_reported_with_its_case() {
        let result = catch_unwind(|| {
            check_loader("test-panics", b"12345", 20, |bytes: &[u8]| -> Result<(), String> {
                assert!(bytes.len() != 3, "three bytes");
                Ok(())
            })
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("case 3 (truncated to 3 bytes): three bytes"), "{message}");
        let summary =
            check_loader("test-ok", b"12345", 20, |bytes: &[u8]| if bytes.len() > 2 { Ok(()) } else { Err("short") });
        assert_eq!((summary.cases, summary.accepted + summary.refused), (20, 20));
    }
}

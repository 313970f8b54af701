//! The book's data sets: registry, resolution order and checksummed download
//! (chapter 2's The Verdict, chapter 6's SMS Spam Collection, chapter 7's instruction data).
//!
//! A data set is looked up, in order, in:
//! 1. an explicit file (`--data FILE`), used as given (it may be any text of the user's);
//! 2. `$LLMS_DATA_DIR/<name>`;
//! 3. the copies bundled with the project, `datasets/<name>` at the workspace root (the
//!    book's small data sets, so a fresh offline clone runs every command and test);
//! 4. the cache `data/<name>` at the workspace root;
//! 5. a download from the canonical URL into that cache: to a temporary file that is
//!    renamed into place only once its SHA-256 matches, so no partial file is ever left.
//!
//! Files found in 2-4 are checked against the registry's SHA-256 too: a mismatch is an
//! error, never silently used. When every source fails the error names the file, the URL
//! and `LLMS_DATA_DIR`.
//!
//! This layer also holds what the chapters make of the data: [`dataset`], chapter 2's
//! sliding-window next-token dataset, its loader and the [`dataset::BatchSource`] trait every
//! loader implements; [`spam`], chapter 6's SMS Spam Collection (pandas-compatible parsing,
//! numpy-identical balancing and split); and [`classification`], chapter 6's padded data set,
//! its loader and the book's three loaders.

pub mod classification;
pub mod dataset;
pub mod spam;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

/// The variable that points at a folder holding the data sets.
pub const DATA_DIR_VAR: &str = "LLMS_DATA_DIR";

/// One data set of the book: where it comes from and what its bytes hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSet {
    /// The file name, in `LLMS_DATA_DIR`, in the cache and inside an archive.
    pub name: &'static str,
    pub description: &'static str,
    /// Canonical download address (a zip archive when `archive_member` is set).
    pub url: &'static str,
    /// The member to extract when `url` is a zip archive.
    pub archive_member: Option<&'static str>,
    /// SHA-256 of the file itself (for archives: of the extracted member); `None` for files
    /// whose upstream may change (the 52k Alpaca data) and for a user's own URLs.
    pub sha256: Option<&'static str>,
}

impl DataSet {
    /// A file of the user's, downloaded from `url` into the cache under the URL's last path
    /// segment and not checksummed (`--data URL`).
    pub fn from_url(url: &str) -> Self {
        let name = url.split(['?', '#']).next().unwrap_or(url).trim_end_matches('/').rsplit('/').next();
        let name = name.filter(|n| !n.is_empty() && !n.contains(':')).unwrap_or("download");
        Self {
            name: Box::leak(name.to_string().into_boxed_str()),
            description: "a data file given by URL",
            url: Box::leak(url.to_string().into_boxed_str()),
            archive_member: None,
            sha256: None,
        }
    }
}

/// Edith Wharton's short story, chapter 2's and chapter 5's training text.
pub const THE_VERDICT: DataSet = DataSet {
    name: "the-verdict.txt",
    description: "Edith Wharton, \"The Verdict\" (1908): 20,479 characters",
    url: "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt",
    archive_member: None,
    sha256: Some("b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"),
};

/// The UCI SMS Spam Collection (chapter 6), `label<TAB>text` lines.
pub const SMS_SPAM_COLLECTION: DataSet = DataSet {
    name: "SMSSpamCollection",
    description: "UCI SMS Spam Collection: 5,574 labelled text messages",
    url: "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    archive_member: Some("SMSSpamCollection"),
    sha256: Some("edc1f2ca36319ca36c6f80fede2f6ae5f81335289352485f3924df077ec20266"),
};

/// The book's 1,100 Alpaca-style instruction records (chapter 7).
pub const INSTRUCTION_DATA: DataSet = DataSet {
    name: "instruction-data.json",
    description: "the book's 1,100 instruction/input/output records",
    url:
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
    archive_member: None,
    sha256: Some("7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944"),
};

/// The book's instruction records with a preferred (`chosen`) and a dispreferred
/// (`rejected`) response each: the record's output and a more polite or impolite rewrite of
/// it, the more polite one chosen; for preference tuning with DPO (the companion's
/// `ch07/04_preference-tuning-with-dpo`).
pub const PREFERENCE_DATA: DataSet = DataSet {
    name: "instruction-data-with-preference.json",
    description: "the book's 1,100 instruction records with chosen and rejected responses",
    url: "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/04_preference-tuning-with-dpo/instruction-data-with-preference.json",
    archive_member: None,
    sha256: Some("305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e"),
};

/// Stanford Alpaca's 52,002 instruction records (exercise 7.3), in the same format as
/// [`INSTRUCTION_DATA`]. Not pinned to a checksum: the upstream repository owns the file.
pub const ALPACA_DATA: DataSet = DataSet {
    name: "alpaca_data.json",
    description: "Stanford Alpaca: 52,002 instruction/input/output records",
    url: "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json",
    archive_member: None,
    sha256: None,
};

/// Karpathy's tiny Shakespeare, a larger text for benchmarks and experiments.
pub const TINY_SHAKESPEARE: DataSet = DataSet {
    name: "tinyshakespeare.txt",
    description: "1.1 MB of Shakespeare's plays",
    url: "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    archive_member: None,
    sha256: Some("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
};

/// Every registered data set.
pub const ALL: &[DataSet] =
    &[THE_VERDICT, SMS_SPAM_COLLECTION, INSTRUCTION_DATA, PREFERENCE_DATA, ALPACA_DATA, TINY_SHAKESPEARE];

/// The registered data set with this file name.
pub fn by_name(name: &str) -> Option<&'static DataSet> {
    ALL.iter().find(|set| set.name == name)
}

/// Why a data set could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data file {path} does not exist", path = .0.display())]
    MissingExplicit(PathBuf),
    #[error("data file {path} is {what}, not a regular file: pass a text file", path = .path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "{name} is not available: it is not in {searched}, and downloading {url} failed ({reason}).\n\
         Download it yourself and pass --data FILE, or set {DATA_DIR_VAR} to a folder that holds {name}."
    )]
    Unavailable { name: &'static str, url: &'static str, searched: String, reason: String },
    #[error(
        "{path} does not have the expected content of {name} (sha256 {actual}, expected {expected}).\n\
         Delete or replace it; a file that fails its checksum is never used.",
        path = .path.display()
    )]
    ChecksumMismatch { name: &'static str, path: PathBuf, expected: &'static str, actual: String },
    #[error("could not read {path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// An explicit `--data` path must be a regular file: a folder or a device (`/dev/zero`
/// never ends) is named for what it is.
pub fn check_explicit(path: &Path) -> Result<(), DataError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = match std::fs::metadata(path) {
        Ok(metadata) => metadata.file_type(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(DataError::MissingExplicit(path.into())),
        Err(source) => return Err(DataError::Io { path: path.into(), source }),
    };
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_fifo() {
        "a pipe"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(DataError::NotAFile { path: path.into(), what })
}

/// Where to look for data sets, in the order of the module documentation.
#[derive(Debug, Clone)]
pub struct DataLocator {
    /// `--data FILE`: wins over everything and is used without a checksum.
    pub explicit: Option<PathBuf>,
    /// `$LLMS_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// The project's bundled copies (`datasets/` at the workspace root).
    pub bundled_dir: Option<PathBuf>,
    /// The download cache (`data/` at the workspace root).
    pub cache_dir: PathBuf,
    /// Whether step 4 may go to the network.
    pub allow_download: bool,
}

impl DataLocator {
    /// The standard order: `explicit`, then `$LLMS_DATA_DIR`, the bundled copies, the cache,
    /// the download.
    pub fn from_env(explicit: Option<PathBuf>) -> Self {
        Self {
            explicit,
            data_dir: std::env::var_os(DATA_DIR_VAR).filter(|v| !v.is_empty()).map(|v| resolve_data_dir(v.into())),
            bundled_dir: Some(bundled_dir()),
            cache_dir: default_cache_dir(),
            allow_download: true,
        }
    }

    /// The same locator without an explicit file (for a second data set in the same run).
    pub fn without_explicit(&self) -> Self {
        Self { explicit: None, ..self.clone() }
    }

    /// A path to a verified copy of `set`, downloading it if needed.
    pub fn locate(&self, set: &DataSet) -> Result<PathBuf, DataError> {
        if let Some(path) = &self.explicit {
            return check_explicit(path).map(|()| path.clone());
        }
        let mut searched = Vec::new();
        match &self.data_dir {
            Some(dir) => {
                let path = dir.join(set.name);
                if path.is_file() {
                    verify(set, &path)?;
                    return Ok(path);
                }
                searched.push(format!("{DATA_DIR_VAR} ({})", dir.display()));
            }
            None => searched.push(format!("{DATA_DIR_VAR} (not set)")),
        }
        if let Some(dir) = &self.bundled_dir {
            let path = dir.join(set.name);
            if path.is_file() {
                verify(set, &path)?;
                return Ok(path);
            }
            searched.push(format!("the bundled data sets {}", dir.display()));
        }
        let cached = self.cache_dir.join(set.name);
        if cached.is_file() {
            verify(set, &cached)?;
            return Ok(cached);
        }
        searched.push(format!("the cache {}", self.cache_dir.display()));
        let unavailable = |reason: String| DataError::Unavailable {
            name: set.name,
            url: set.url,
            searched: searched.join(" or "),
            reason,
        };
        if !self.allow_download {
            return Err(unavailable("downloads are disabled".into()));
        }
        download_into_cache(set, &self.cache_dir).map_err(|e| match e {
            DownloadError::Checksum(err) => err,
            DownloadError::Other(reason) => unavailable(reason),
        })
    }

    /// The contents of `set` as UTF-8 text.
    pub fn read_to_string(&self, set: &DataSet) -> Result<String, DataError> {
        let path = self.locate(set)?;
        fs::read_to_string(&path).map_err(|source| DataError::Io { path, source })
    }
}

/// A relative `LLMS_DATA_DIR` is taken from the current folder when it exists there, else
/// from the workspace root: `cargo test` runs each crate's tests inside the crate's folder,
/// so `LLMS_DATA_DIR=../shared/data cargo test` from the root must still find the data.
fn resolve_data_dir(dir: PathBuf) -> PathBuf {
    if dir.is_absolute() || dir.is_dir() {
        dir
    } else {
        crate::workspace_root().join(dir)
    }
}

/// `datasets/` at the workspace root: the book's small data sets, committed with the project
/// (their sources, licences and checksums are in `datasets/README.md`).
pub fn bundled_dir() -> PathBuf {
    crate::workspace_root().join("datasets")
}

/// `data/` at the workspace root.
pub fn default_cache_dir() -> PathBuf {
    crate::workspace_root().join("data")
}

/// Hex SHA-256 of everything `reader` yields.
pub fn sha256_hex(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut reader, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a file against the registry's SHA-256 (any file passes for a set without one).
pub fn verify(set: &DataSet, path: &Path) -> Result<(), DataError> {
    let Some(expected) = set.sha256 else {
        return Ok(());
    };
    let io_error = |source| DataError::Io { path: path.to_path_buf(), source };
    let actual = sha256_hex(File::open(path).map_err(io_error)?).map_err(io_error)?;
    if actual == expected {
        Ok(())
    } else {
        Err(DataError::ChecksumMismatch { name: set.name, path: path.to_path_buf(), expected, actual })
    }
}

pub(crate) enum DownloadError {
    Checksum(DataError),
    Other(String),
}

impl DownloadError {
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Checksum(err) => err.to_string(),
            Self::Other(reason) => reason.clone(),
        }
    }
}

impl<E: fmt::Display> From<E> for DownloadError {
    fn from(err: E) -> Self {
        Self::Other(err.to_string())
    }
}

fn download_into_cache(set: &DataSet, cache_dir: &Path) -> Result<PathBuf, DownloadError> {
    let created_dir = !cache_dir.exists();
    let result =
        fs::create_dir_all(cache_dir).map_err(DownloadError::from).and_then(|()| download_verified(set, cache_dir));
    if result.is_err() && created_dir {
        // Leave no trace of a failed download, not even an empty folder.
        let _ = fs::remove_dir(cache_dir);
    }
    result
}

fn download_verified(set: &DataSet, cache_dir: &Path) -> Result<PathBuf, DownloadError> {
    let mut download = NamedTempFile::new_in(cache_dir)?;
    fetch(set.url, download.as_file_mut())?;
    let file = match set.archive_member {
        None => download,
        Some(member) => extract_member(download.path(), member, cache_dir)?,
    };
    let target = cache_dir.join(set.name);
    verify(set, file.path()).map_err(DownloadError::Checksum)?;
    file.persist(&target).map_err(|e| e.error)?;
    Ok(target)
}

/// Streams `url` into `out` with a progress bar.
pub(crate) fn fetch(url: &str, out: &mut File) -> Result<(), DownloadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    let length =
        response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let bar = length.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("downloading {url}"));
    let mut reader = bar.wrap_read(response.body_mut().as_reader());
    io::copy(&mut reader, out)?;
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}

fn extract_member(archive: &Path, member: &str, dir: &Path) -> Result<NamedTempFile, DownloadError> {
    let mut zip = zip::ZipArchive::new(File::open(archive)?)?;
    let mut entry = zip.by_name(member).map_err(|e| format!("{member} not found in the archive: {e}"))?;
    let mut extracted = NamedTempFile::new_in(dir)?;
    io::copy(&mut entry, extracted.as_file_mut())?;
    Ok(extracted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_locator(data_dir: Option<&Path>, cache: &Path) -> DataLocator {
        DataLocator {
            explicit: None,
            data_dir: data_dir.map(Path::to_path_buf),
            bundled_dir: None,
            cache_dir: cache.to_path_buf(),
            allow_download: true,
        }
    }

    /// A data set whose URL nothing listens on, so a download fails at once.
    const UNREACHABLE: DataSet = DataSet {
        name: "unreachable.txt",
        description: "test",
        url: "http://127.0.0.1:9/unreachable.txt",
        archive_member: None,
        sha256: Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"), // "hello"
    };

    #[test]
    fn registry_has_the_six_data_sets() {
        assert_eq!(ALL.len(), 6);
        assert_eq!(by_name("the-verdict.txt"), Some(&THE_VERDICT));
        assert!(by_name("nope").is_none());
        for set in ALL {
            assert!(set.sha256.is_none_or(|sha| sha.len() == 64), "{}", set.name);
            assert!(set.url.starts_with("https://"));
        }
        assert_eq!(ALL.iter().filter(|set| set.sha256.is_none()).count(), 1, "only Alpaca is unpinned");
    }

    #[test]
    fn a_url_names_its_cached_file() {
        let set = DataSet::from_url("https://example.org/data/my-records.json?raw=1");
        assert_eq!(
            (set.name, set.url, set.sha256),
            ("my-records.json", "https://example.org/data/my-records.json?raw=1", None)
        );
        assert_eq!(DataSet::from_url("https://example.org/").name, "example.org");
        assert_eq!(DataSet::from_url("https://").name, "download");
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(Some(sha256_hex(&b"hello"[..]).unwrap().as_str()), UNREACHABLE.sha256);
    }

    #[test]
    fn explicit_file_wins_and_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.txt");
        fs::write(&file, "my own text").unwrap();
        let mut locator = offline_locator(None, dir.path());
        locator.explicit = Some(file.clone());
        assert_eq!(locator.locate(&UNREACHABLE).unwrap(), file);
        locator.explicit = Some(dir.path().join("absent.txt"));
        let err = locator.locate(&UNREACHABLE).unwrap_err().to_string();
        assert!(err.contains("absent.txt does not exist"), "{err}");
        // A folder or a device is named for what it is (it used to "not exist").
        for (path, what) in [(dir.path(), "is a folder"), (Path::new("/dev/zero"), "is a device")] {
            locator.explicit = Some(path.to_path_buf());
            let err = locator.locate(&UNREACHABLE).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn data_dir_then_cache_with_checksums() {
        let data_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let locator = offline_locator(Some(data_dir.path()), cache.path());

        fs::write(cache.path().join(UNREACHABLE.name), "hello").unwrap();
        assert_eq!(locator.locate(&UNREACHABLE).unwrap(), cache.path().join(UNREACHABLE.name));

        fs::write(data_dir.path().join(UNREACHABLE.name), "hello").unwrap();
        assert_eq!(locator.locate(&UNREACHABLE).unwrap(), data_dir.path().join(UNREACHABLE.name));
        assert_eq!(locator.read_to_string(&UNREACHABLE).unwrap(), "hello");
    }

    #[test]
    fn bundled_copies_come_after_the_data_dir_and_before_the_cache() {
        let data_dir = tempfile::tempdir().unwrap();
        let bundled = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut locator = offline_locator(None, cache.path());
        locator.bundled_dir = Some(bundled.path().to_path_buf());
        fs::write(cache.path().join(UNREACHABLE.name), "hello").unwrap();
        fs::write(bundled.path().join(UNREACHABLE.name), "hello").unwrap();
        assert_eq!(locator.locate(&UNREACHABLE).unwrap(), bundled.path().join(UNREACHABLE.name));
        locator.data_dir = Some(data_dir.path().to_path_buf());
        fs::write(data_dir.path().join(UNREACHABLE.name), "hello").unwrap();
        assert_eq!(locator.locate(&UNREACHABLE).unwrap(), data_dir.path().join(UNREACHABLE.name));
        // A bundled copy that was edited is refused like any other.
        fs::write(bundled.path().join(UNREACHABLE.name), "hellO").unwrap();
        locator.data_dir = None;
        assert!(matches!(locator.locate(&UNREACHABLE), Err(DataError::ChecksumMismatch { .. })));
    }

    #[test]
    fn every_pinned_data_set_is_bundled_with_the_project() {
        let locator = DataLocator {
            explicit: None,
            data_dir: None,
            bundled_dir: Some(bundled_dir()),
            cache_dir: tempfile::tempdir().unwrap().path().join("absent"),
            allow_download: false,
        };
        for set in ALL.iter().filter(|set| set.sha256.is_some()) {
            assert_eq!(locator.locate(set).unwrap(), bundled_dir().join(set.name), "{}", set.name);
        }
        let readme = fs::read_to_string(bundled_dir().join("README.md")).unwrap();
        for set in ALL.iter().filter(|set| set.sha256.is_some()) {
            assert!(readme.contains(set.sha256.unwrap()), "datasets/README.md lacks the checksum of {}", set.name);
        }
    }

    #[test]
    fn a_file_with_the_wrong_checksum_is_refused() {
        let data_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        fs::write(data_dir.path().join(UNREACHABLE.name), "hellO").unwrap();
        fs::write(cache.path().join(UNREACHABLE.name), "hello").unwrap();
        let err = offline_locator(Some(data_dir.path()), cache.path()).locate(&UNREACHABLE).unwrap_err();
        assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("never used"), "{err}");
    }

    #[test]
    fn offline_and_absent_gives_one_clear_error_and_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("data");
        let err = offline_locator(None, &cache).locate(&UNREACHABLE).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DataError::Unavailable { .. }), "{message}");
        for needle in [UNREACHABLE.name, UNREACHABLE.url, DATA_DIR_VAR, "--data FILE"] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
        assert!(!cache.exists(), "a failed download must not leave the cache folder behind");

        fs::create_dir(&cache).unwrap();
        offline_locator(None, &cache).locate(&UNREACHABLE).unwrap_err();
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0, "no partial file may be left");
    }

    /// Serves `body` to each of `requests` HTTP requests on 127.0.0.1; returns the base URL.
    fn serve(body: Vec<u8>, requests: usize) -> String {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&body).unwrap();
            }
        });
        url
    }

    fn served_set(url: String, archive_member: Option<&'static str>) -> DataSet {
        DataSet { url: Box::leak(url.into_boxed_str()), archive_member, ..UNREACHABLE }
    }

    #[test]
    fn downloads_verify_and_land_in_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let set = served_set(serve(b"hello".to_vec(), 1) + "/hello.txt", None);
        let path = offline_locator(None, cache.path()).locate(&set).unwrap();
        assert_eq!(path, cache.path().join(set.name));
        assert_eq!(fs::read_to_string(&path).unwrap(), "hello");
        assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 1, "only the verified file remains");
    }

    #[test]
    fn a_download_with_the_wrong_checksum_is_discarded() {
        let cache = tempfile::tempdir().unwrap();
        let set = served_set(serve(b"not hello".to_vec(), 1) + "/hello.txt", None);
        let err = offline_locator(None, cache.path()).locate(&set).unwrap_err();
        assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 0, "nothing may be left behind");
    }

    #[test]
    fn archives_are_downloaded_and_their_member_extracted() {
        let mut archive = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        archive.start_file("readme", options).unwrap();
        archive.write_all(b"about the data").unwrap();
        archive.start_file(UNREACHABLE.name, options).unwrap();
        archive.write_all(b"hello").unwrap();
        let zipped = archive.finish().unwrap().into_inner();

        let cache = tempfile::tempdir().unwrap();
        let set = served_set(serve(zipped, 1) + "/data.zip", Some(UNREACHABLE.name));
        let path = offline_locator(None, cache.path()).locate(&set).unwrap();
        assert_eq!(fs::read_to_string(path).unwrap(), "hello");
        assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 1);
    }
}

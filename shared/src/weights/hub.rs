//! Files from the Hugging Face hub, kept in the standard Hugging Face cache so that Python's
//! `huggingface_hub` and this project share downloads:
//! `<cache>/models--<org>--<name>/{blobs/<etag>, snapshots/<commit>/<file> -> blob, refs/main}`.
//!
//! The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
//! `HF_HUB_OFFLINE=1` forbids downloads; `HF_ENDPOINT` replaces `https://huggingface.co`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The hub cache folder, from the environment as `huggingface_hub` reads it.
pub fn hub_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|home| home.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|cache| cache.join("huggingface").join("hub")))
        .or_else(|| var("HOME").map(|home| home.join(".cache").join("huggingface").join("hub")))
        .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"))
}

/// One file of a hub repository at the `main` revision.
#[derive(Debug, Clone)]
pub struct HubFile {
    pub repo: String,
    pub filename: String,
    pub cache_dir: PathBuf,
    pub endpoint: String,
    pub offline: bool,
}

impl HubFile {
    /// The file with the cache, endpoint and offline mode of the environment.
    pub fn new(repo: &str, filename: &str) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            repo: repo.to_string(),
            filename: filename.to_string(),
            cache_dir: hub_cache_dir(),
            endpoint: env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON")),
        }
    }

    fn repo_dir(&self) -> PathBuf {
        self.cache_dir.join(format!("models--{}", self.repo.replace('/', "--")))
    }

    /// The cached copy at the revision `refs/main` points to, if there is one.
    pub fn cached(&self) -> Option<PathBuf> {
        let commit = fs::read_to_string(self.repo_dir().join("refs").join("main")).ok()?;
        let path = self.repo_dir().join("snapshots").join(commit.trim()).join(&self.filename);
        path.is_file().then_some(path)
    }

    /// The cached copy, or a fresh download into the cache.
    pub fn fetch(&self) -> Result<PathBuf> {
        if let Some(path) = self.cached() {
            return Ok(path);
        }
        let help = format!(
            "Download it when online (it lands in the Hugging Face cache {}), or pass --weights with a \
             folder that holds config.json and model.safetensors.",
            self.cache_dir.display()
        );
        if self.offline {
            bail!(
                "{}/{} is not in the Hugging Face cache and HF_HUB_OFFLINE forbids downloading it. {help}",
                self.repo,
                self.filename
            );
        }
        self.download().with_context(|| {
            format!(
                "{}/{} is not in the Hugging Face cache and could not be downloaded. {help}",
                self.repo, self.filename
            )
        })
    }

    fn download(&self) -> Result<PathBuf> {
        let url = format!("{}/{}/resolve/main/{}", self.endpoint.trim_end_matches('/'), self.repo, self.filename);
        // The hub answers the first request with the commit and the file's etag (the blob
        // name), then redirects large files to its CDN.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(20)))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let head = agent.head(&url).call().with_context(|| format!("requesting {url}"))?;
        let status = head.status();
        if !(status.is_success() || status.is_redirection()) {
            bail!("{url} answered {status}");
        }
        let header = |name: &str| head.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let commit = header("x-repo-commit").unwrap_or_else(|| "main".into());
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .with_context(|| format!("{url} sent no etag"))?;
        let repo_dir = self.repo_dir();
        let blobs = repo_dir.join("blobs");
        fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        let blob = blobs.join(&etag);
        if !blob.is_file() {
            let mut partial = tempfile::NamedTempFile::new_in(&blobs)?;
            crate::data::fetch(&url, partial.as_file_mut())
                .map_err(|e| anyhow::anyhow!("downloading {url}: {}", e.message()))?;
            partial.persist(&blob).map_err(|e| e.error)?;
        }
        let snapshot = repo_dir.join("snapshots").join(&commit);
        fs::create_dir_all(&snapshot)?;
        let link = snapshot.join(&self.filename);
        if !link.exists() {
            link_or_copy(&Path::new("../../blobs").join(&etag), &blob, &link)?;
        }
        fs::create_dir_all(repo_dir.join("refs"))?;
        fs::write(repo_dir.join("refs").join("main"), &commit)?;
        Ok(link)
    }
}

#[cfg(unix)]
fn link_or_copy(relative: &Path, _blob: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(relative, link).with_context(|| format!("linking {}", link.display()))
}

#[cfg(not(unix))]
fn link_or_copy(_relative: &Path, blob: &Path, link: &Path) -> Result<()> {
    fs::copy(blob, link).map(|_| ()).with_context(|| format!("copying to {}", link.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(cache: &Path, endpoint: &str) -> HubFile {
        HubFile {
            repo: "openai-community/gpt2".into(),
            filename: "config.json".into(),
            cache_dir: cache.to_path_buf(),
            endpoint: endpoint.into(),
            offline: false,
        }
    }

    #[test]
    fn finds_files_in_the_standard_cache_layout() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--openai-community--gpt2");
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        fs::write(repo.join("refs/main"), "abc123").unwrap();
        fs::write(repo.join("snapshots/abc123/config.json"), "{}").unwrap();
        let hub = file(cache.path(), "http://127.0.0.1:9");
        assert_eq!(hub.fetch().unwrap(), repo.join("snapshots/abc123/config.json"));
    }

    #[test]
    fn offline_without_a_copy_is_one_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        // Port 9 (discard) refuses connections on a normal machine: the "no network" case.
        let err = format!("{:#}", file(cache.path(), "http://127.0.0.1:9").fetch().unwrap_err());
        assert!(err.contains("openai-community/gpt2/config.json is not in the Hugging Face cache"), "{err}");
        assert!(err.contains("--weights"), "{err}");
        let offline = HubFile { offline: true, ..file(cache.path(), "http://127.0.0.1:9") };
        let err = format!("{:#}", offline.fetch().unwrap_err());
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    }
}

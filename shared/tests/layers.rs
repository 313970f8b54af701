//! The crate's layering rule: a layer's files import only their own layer and the layers
//! below it, read off their `crate::` paths (test modules, which may import anything, left
//! out). Each layer is a folder of `src/`; besides them `src/` holds only `lib.rs` and the
//! test helpers of the `testing` feature.

use std::path::Path;

/// The layers, bottom first. `tokenizer` sits below `model`: a model's config names its
/// tokenizer, so that a checkpoint carries it.
const LAYERS: &[&str] = &["core", "nn", "tokenizer", "model", "data", "weights", "generate", "train", "app"];

/// A module's layer: its position in [`LAYERS`], or above all of them.
fn rank(module: &str) -> usize {
    LAYERS.iter().position(|layer| *layer == module).unwrap_or(LAYERS.len())
}

/// The `crate::X` paths a file's library code uses: everything before `#[cfg(test)]`,
/// comments left out (a doc link to a higher layer is not a dependency).
fn imports(source: &str) -> Vec<String> {
    let library = source.split("#[cfg(test)]").next().unwrap_or("");
    let code: String =
        library.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

/// The `.rs` files under `dir`, in subfolders too, sorted.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (own, layer) in LAYERS.iter().enumerate() {
        for file in rust_files(&src.join(layer)) {
            let source = std::fs::read_to_string(&file).unwrap();
            for module in imports(&source) {
                // `workspace_root` is a function at the crate root, usable by every layer.
                if rank(&module) > own && module != "workspace_root" {
                    broken.push(format!("{} imports crate::{module}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "imports that run up the layers:\n{}", broken.join("\n"));
}

#[test]
fn every_module_sits_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut outside = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let module = name.trim_end_matches(".rs");
        if !LAYERS.contains(&module) && !["lib", "fuzz", "reference"].contains(&module) {
            outside.push(name);
        }
    }
    assert!(outside.is_empty(), "modules outside the layers: {outside:?}");
}

#[test]
fn imports_are_read_from_library_code_only() {
    let source = "use crate::core::device;\n/// See [`crate::train`].\nfn f() { crate::app::x(); }\n#[cfg(test)]\nmod tests { use crate::train; }";
    assert_eq!(imports(source), ["core", "app"]);
    assert_eq!(rank("core"), 0);
    assert_eq!(rank("model"), 3);
    assert_eq!(rank("app"), 8);
    assert_eq!(rank("fuzz"), LAYERS.len());
}

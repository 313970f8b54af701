//! Compiles `cpp/native.cpp` (see `src/native.rs`) against the LibTorch that `torch-sys`
//! found: its `lib/` comes as `DEP_TCH_LIBTORCH_LIB`, with `include/` beside it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=cpp/native.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports LibTorch's lib folder"));
    let include = lib.parent().expect("LibTorch's lib folder has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .file("cpp/native.cpp")
        .compile("llms_native");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

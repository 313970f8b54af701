//! Compiles `cpp/native.cpp` (see `src/native.rs`) against the LibTorch that `torch-sys`
//! found: its `lib/` comes as `DEP_TCH_LIBTORCH_LIB`, with `include/` beside it. With Gloo's
//! headers at hand (`GLOO_INCLUDE_DIR`, else Debian's libgloo-dev in /usr/include) it also
//! compiles `cpp/distributed.cpp` (see `src/distributed.rs`) and sets `cfg(llms_gloo)`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=cpp/native.cpp");
    println!("cargo:rerun-if-changed=cpp/distributed.cpp");
    println!("cargo:rerun-if-changed=cpp/c_api.hpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE_DIR");
    println!("cargo::rustc-check-cfg=cfg(llms_gloo)");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports LibTorch's lib folder"));
    let include = lib.parent().expect("LibTorch's lib folder has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .file("cpp/native.cpp");
    let gloo = std::env::var("GLOO_INCLUDE_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    println!("cargo:rerun-if-changed={}", gloo.join("gloo/context.h").display());
    if gloo.join("gloo/context.h").is_file() && has_c10d(&include) {
        build.include(&gloo).define("USE_C10D_GLOO", None).file("cpp/distributed.cpp");
        println!("cargo:rustc-cfg=llms_gloo");
    } else {
        println!(
            "cargo:warning=Gloo's headers were not found ({}/gloo): distributed training is left out. \
             Install them (apt-get install libgloo-dev) or set GLOO_INCLUDE_DIR, then rebuild.",
            gloo.display()
        );
    }
    build.compile("llms_native");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

fn has_c10d(include: &Path) -> bool {
    include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").is_file()
}

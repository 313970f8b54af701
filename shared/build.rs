//! Compiles `cpp/native.cpp` (see `src/core/native.rs`) against the LibTorch that `torch-sys`
//! found: its `lib/` comes as `DEP_TCH_LIBTORCH_LIB`, with `include/` beside it. With Gloo's
//! headers at hand (`GLOO_INCLUDE_DIR`, else Debian's libgloo-dev in /usr/include) it also
//! compiles `cpp/distributed.cpp` (see `src/train/distributed.rs`) and sets `cfg(llms_gloo)`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=cpp/native.cpp");
    println!("cargo:rerun-if-changed=cpp/distributed.cpp");
    println!("cargo:rerun-if-changed=cpp/c_api.hpp");
    println!("cargo:rerun-if-changed=cpp/distributed.hpp");
    println!("cargo:rerun-if-changed=cpp/distributed_nccl.cpp");
    println!("cargo::rustc-check-cfg=cfg(llms_nccl)");
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
    let has_gloo = gloo.join("gloo/context.h").is_file() && has_c10d(&include);
    if has_gloo {
        build.include(&gloo).define("USE_C10D_GLOO", None).file("cpp/distributed.cpp");
        println!("cargo:rustc-cfg=llms_gloo");
        build_nccl(&lib, &include, &abi);
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

/// c10d's NCCL constructor (`cpp/distributed_nccl.cpp`), when the setup's Python
/// environment (the site-packages around LibTorch) has NCCL's, CUDA's and CCCL's headers.
fn build_nccl(lib: &Path, include: &Path, abi: &str) {
    let Some(site) = std::fs::canonicalize(lib).ok().and_then(|lib| Some(lib.parent()?.parent()?.to_path_buf())) else {
        return;
    };
    let cuda = site.join("nvidia/cu13/include");
    let nccl = site.join("nvidia/nccl/include");
    let crt = site.join("triton/backends/nvidia/include");
    let needed =
        [cuda.join("cuda_runtime_api.h"), cuda.join("nv/target"), nccl.join("nccl.h"), crt.join("crt/host_config.h")];
    for path in &needed {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if let Some(missing) = needed.iter().find(|path| !path.exists()) {
        println!(
            "cargo:warning=the NCCL backend is left out: {} is missing (scripts/setup.sh installs it)",
            missing.display()
        );
        return;
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .include(&cuda)
        .include(&crt)
        .include(&nccl)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("USE_C10D_NCCL", None)
        .define("USE_CUDA", None)
        .file("cpp/distributed_nccl.cpp")
        .compile("llms_nccl");
    println!("cargo:rustc-cfg=llms_nccl");
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
}

fn has_c10d(include: &Path) -> bool {
    include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").is_file()
}

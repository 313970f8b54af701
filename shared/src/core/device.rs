//! Device choice and seeding (appendix A, "A.9 Optimizing training performance with GPUs").
//!
//! Every binary takes `--device auto|cpu|cuda|cuda:N`: `auto` picks the first CUDA device
//! when one is available and the CPU otherwise, the others ask for a device explicitly and
//! fail with a clear error when it is not there.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use tch::Device;

/// The device a user asked for, before it is checked against the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when CUDA is available, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device '{s}': expected auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl DeviceChoice {
    /// The `tch` device for this choice, or an error if the machine lacks it.
    pub fn resolve(self) -> Result<Device> {
        let cuda_devices = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
        match self {
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(_) if cuda_devices == 0 => {
                bail!("--device {self} was requested but no CUDA device is available (use --device cpu or auto)")
            }
            Self::Cuda(index) if index >= cuda_devices => {
                bail!("--device {self} was requested but this machine has {cuda_devices} CUDA device(s) (cuda:0 to cuda:{})", cuda_devices - 1)
            }
            Self::Cuda(index) => Ok(Device::Cuda(index)),
        }
    }
}

/// A short name for a dtype, as tables print it (`float32`, `bfloat16`).
pub fn dtype_name(kind: tch::Kind) -> String {
    match kind {
        tch::Kind::Float => "float32".into(),
        tch::Kind::BFloat16 => "bfloat16".into(),
        tch::Kind::Half => "float16".into(),
        other => format!("{other:?}"),
    }
}

/// A short name for a device, as the CLI prints it (`cpu`, `cuda:0`).
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        Device::Cpu => "cpu".into(),
    }
}

/// The machine's memory in bytes (Linux's `MemTotal`), when it can be read.
pub fn system_memory_bytes() -> Option<i64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")?.checked_mul(1024)
}

/// The number of a `/proc` line `FIELD   N kB`.
fn kib_field(text: &str, field: &str) -> Option<i64> {
    let line = text.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How much memory this process may still allocate, and what sets that bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: i64,
    /// `the machine's memory`, `the address-space limit, ulimit -v`, ...
    pub limit: &'static str,
}

/// The smallest of the machine's memory, what is left under this process's address-space
/// and data limits (`ulimit -v`, `ulimit -d`; the address space LibTorch's libraries
/// already map counts against the first), and its cgroup's memory limit (a container's).
/// `None` when none of them can be read.
pub fn memory_budget() -> Option<MemoryBudget> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let status_bytes = |field: &str| kib_field(&status, field).unwrap_or(0).saturating_mul(1024);
    let rlimit_left = |resource, used: i64| -> Option<i64> {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given.
        let read = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
        (read && limit.rlim_cur != libc::RLIM_INFINITY)
            .then(|| i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX).saturating_sub(used).max(0))
    };
    // The whole limit, like the machine's total: page cache counts in a cgroup's use. No
    // limit reads "max", which does not parse.
    let cgroup_limit =
        || -> Option<i64> { std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?.trim().parse().ok() };
    [
        system_memory_bytes().map(|bytes| (bytes, "the machine's memory")),
        rlimit_left(libc::RLIMIT_AS, status_bytes("VmSize:")).map(|b| (b, "the address-space limit, ulimit -v")),
        rlimit_left(libc::RLIMIT_DATA, status_bytes("VmData:")).map(|b| (b, "the data-segment limit, ulimit -d")),
        cgroup_limit().map(|bytes| (bytes, "the memory limit of its cgroup")),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|(bytes, _)| *bytes)
    .map(|(bytes, limit)| MemoryBudget { bytes, limit })
}

/// Seeds LibTorch's global generators (CPU and CUDA) like `torch.manual_seed(seed)`.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// Serialises users of the process-wide generator.
///
/// Rust runs the tests of one binary on several threads, and LibTorch has one global
/// generator: a test that seeds it and compares the numbers drawn afterwards holds this
/// lock for as long as it draws, and so does every other test that draws from it (building
/// a model, iterating a data loader, dropout). Binaries run one job and need no lock.
pub fn global_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        for bad in ["", "tpu", "cuda:", "cuda:x", "cuda:-1"] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(err.contains("expected auto, cpu, cuda or cuda:N"), "{err}");
        }
    }

    #[test]
    fn the_memory_budget_is_at_most_the_machines_memory() {
        let budget = memory_budget().expect("Linux tells");
        assert!(budget.bytes > 0 && budget.bytes <= system_memory_bytes().unwrap(), "{budget:?}");
    }

    #[test]
    fn display_round_trips() {
        for choice in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(2)] {
            assert_eq!(choice.to_string().parse(), Ok(choice));
        }
    }

    #[test]
    fn resolves_against_the_machine() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        assert_eq!(DeviceChoice::Auto.resolve().unwrap(), Device::cuda_if_available());
        if tch::Cuda::is_available() {
            assert_eq!(DeviceChoice::Cuda(0).resolve().unwrap(), Device::Cuda(0));
            assert!(DeviceChoice::Cuda(1000).resolve().is_err());
        } else {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(err.contains("no CUDA device is available"), "{err}");
        }
    }

    #[test]
    fn seeding_repeats_random_draws() {
        let _rng = global_rng_lock();
        seed_everything(123);
        let a = tch::Tensor::rand([4], (tch::Kind::Float, Device::Cpu));
        seed_everything(123);
        let b = tch::Tensor::rand([4], (tch::Kind::Float, Device::Cpu));
        assert!(a.equal(&b));
    }
}

//! Appendix A.9.3's data-parallel training on LibTorch's own distributed engine, c10d
//! (compiled from `cpp/distributed.cpp` and `cpp/distributed_nccl.cpp`, see `build.rs`): a
//! [`ProcessGroup`] joined through a TCP store at `MASTER_ADDR:MASTER_PORT` (the variables
//! `torchrun` sets), the collectives of Gloo (CPU tensors) or NCCL (CUDA tensors; compiled,
//! not yet run on a GPU), and on top of them what `DistributedDataParallel` and
//! `DistributedSampler` do: parameters broadcast from rank 0 ([`DataParallel::new`]),
//! gradients averaged in buckets after `backward` ([`DataParallel::average_gradients`]),
//! and each rank's share of every epoch's shuffle ([`shard`]). A peer that dies, a wrong
//! address or a missing process is an `Err` once the timeout has passed, never a hang.

use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tch::{Kind, Tensor};

#[cfg(llms_gloo)]
use crate::core::native::check;
use crate::core::native::pointers;
use crate::core::torch_rng;
use crate::data::dataset::BatchSource;
use crate::data::dataset::{batch_count, Batch, DataLoader};

/// The rendezvous: where rank 0's store listens, and who this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    pub master_addr: String,
    pub master_port: u16,
    pub rank: usize,
    pub world_size: usize,
    /// The process's index on its machine (its GPU, with NCCL).
    pub local_rank: usize,
}

impl Rendezvous {
    /// From `MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE` and `LOCAL_RANK` (as `torchrun`
    /// sets them); `None` when `RANK` and `WORLD_SIZE` are not set.
    pub fn from_env() -> Result<Option<Self>> {
        let var = |name: &str| std::env::var(name).ok();
        let (Some(rank), Some(world)) = (var("RANK"), var("WORLD_SIZE")) else {
            return Ok(None);
        };
        let number = |name: &str, value: &str| -> Result<usize> {
            value.parse().with_context(|| format!("{name}={value} is not a number"))
        };
        let rendezvous = Self {
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port: var("MASTER_PORT")
                .context("MASTER_PORT is not set (the port of rank 0's store)")?
                .parse()
                .context("MASTER_PORT is not a port number")?,
            rank: number("RANK", &rank)?,
            world_size: number("WORLD_SIZE", &world)?,
            local_rank: var("LOCAL_RANK").map_or(Ok(0), |v| number("LOCAL_RANK", &v))?,
        };
        ensure!(
            rendezvous.rank < rendezvous.world_size,
            "RANK={} must be below WORLD_SIZE={}",
            rendezvous.rank,
            rendezvous.world_size
        );
        Ok(Some(rendezvous))
    }
}

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo, over TCP: CPU tensors.
    Gloo,
    /// NVIDIA's NCCL: CUDA tensors.
    Nccl,
}

#[cfg(llms_gloo)]
extern "C" {
    fn llms_gloo_group_new(
        addr: *const std::ffi::c_char,
        port: i32,
        rank: i32,
        world_size: i32,
        timeout_ms: i64,
        out: *mut *mut c_void,
    ) -> *mut std::ffi::c_char;
    fn llms_group_free(group: *mut c_void);
    fn llms_group_all_reduce_sum(
        group: *mut c_void,
        items: *const *mut torch_sys::C_tensor,
        n: usize,
    ) -> *mut std::ffi::c_char;
    fn llms_group_broadcast(
        group: *mut c_void,
        items: *const *mut torch_sys::C_tensor,
        n: usize,
        root: i32,
    ) -> *mut std::ffi::c_char;
    fn llms_group_barrier(group: *mut c_void) -> *mut std::ffi::c_char;
}

/// A c10d process group (`torch.distributed.init_process_group`).
#[derive(Debug)]
pub struct ProcessGroup {
    #[cfg_attr(not(llms_gloo), allow(dead_code))]
    group: *mut c_void,
    pub rank: usize,
    pub world_size: usize,
}

// SAFETY: the group is used from one thread at a time (`&mut`-free calls block until done),
// and c10d's objects may move between threads.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group `rendezvous` describes; every process waits at most `timeout` for the
    /// others, here and in every collective.
    pub fn new(rendezvous: &Rendezvous, backend: Backend, timeout: Duration) -> Result<Self> {
        let Rendezvous { master_addr, master_port, rank, world_size, .. } = rendezvous;
        ensure!(*world_size >= 1 && rank < world_size, "rank {rank} of {world_size} processes");
        let addr = CString::new(master_addr.as_str()).context("MASTER_ADDR holds a NUL byte")?;
        let group = match backend {
            Backend::Gloo => new_gloo(&addr, *master_port, *rank, *world_size, timeout),
            Backend::Nccl => new_nccl(&addr, *master_port, *rank, *world_size, timeout, rendezvous.local_rank),
        }
        .with_context(|| {
            format!(
                "joining the process group as rank {rank} of {world_size} at {master_addr}:{master_port} \
                 (timeout {} s)",
                timeout.as_secs_f64()
            )
        })?;
        Ok(Self { group, rank: *rank, world_size: *world_size })
    }

    /// Sums each tensor over the group, in place (`all_reduce(op=SUM)`).
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        let pointers = pointers(tensors);
        #[cfg(llms_gloo)]
        return check(unsafe { llms_group_all_reduce_sum(self.group, pointers.as_ptr(), pointers.len()) })
            .context("all-reduce");
        #[cfg(not(llms_gloo))]
        unreachable!("no group exists without Gloo ({} tensors)", pointers.len())
    }

    /// Copies `root`'s tensors into every rank's, in place (`broadcast`).
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let pointers = pointers(tensors);
        #[cfg(llms_gloo)]
        return check(unsafe { llms_group_broadcast(self.group, pointers.as_ptr(), pointers.len(), root as i32) })
            .context("broadcast");
        #[cfg(not(llms_gloo))]
        unreachable!("no group exists without Gloo ({} tensors, root {root})", pointers.len())
    }

    /// Waits until every rank has reached this call.
    pub fn barrier(&self) -> Result<()> {
        #[cfg(llms_gloo)]
        return check(unsafe { llms_group_barrier(self.group) }).context("barrier");
        #[cfg(not(llms_gloo))]
        unreachable!("no group exists without Gloo")
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(llms_gloo)]
        unsafe {
            llms_group_free(self.group)
        };
    }
}

#[cfg(llms_gloo)]
fn new_gloo(addr: &CString, port: u16, rank: usize, world_size: usize, timeout: Duration) -> Result<*mut c_void> {
    let mut group = std::ptr::null_mut();
    check(unsafe {
        llms_gloo_group_new(addr.as_ptr(), port as i32, rank as i32, world_size as i32, millis(timeout), &mut group)
    })?;
    Ok(group)
}

#[cfg(not(llms_gloo))]
fn new_gloo(_: &CString, _: u16, _: usize, _: usize, _: Duration) -> Result<*mut c_void> {
    bail!(
        "this build has no distributed training: Gloo's headers were missing when `shared` was compiled. \
         Install them (apt-get install libgloo-dev, or set GLOO_INCLUDE_DIR), then rebuild \
         (cargo clean -p shared)"
    )
}

/// `timeout` in whole milliseconds, as c10d takes it.
#[cfg(llms_gloo)]
fn millis(timeout: Duration) -> i64 {
    timeout.as_millis().min(i64::MAX as u128) as i64
}

/// Whether this build has c10d's NCCL backend (it needs NCCL's, CUDA's and CCCL's headers
/// at build time, which `scripts/setup.sh` installs).
pub const NCCL_BUILT: bool = cfg!(llms_nccl);

#[cfg(llms_nccl)]
fn new_nccl(
    addr: &CString,
    port: u16,
    rank: usize,
    world_size: usize,
    timeout: Duration,
    device: usize,
) -> Result<*mut c_void> {
    extern "C" {
        fn llms_nccl_group_new(
            addr: *const std::ffi::c_char,
            port: i32,
            rank: i32,
            world_size: i32,
            timeout_ms: i64,
            device: i32,
            out: *mut *mut c_void,
        ) -> *mut std::ffi::c_char;
    }
    let mut group = std::ptr::null_mut();
    check(unsafe {
        llms_nccl_group_new(
            addr.as_ptr(),
            port as i32,
            rank as i32,
            world_size as i32,
            millis(timeout),
            device as i32,
            &mut group,
        )
    })?;
    Ok(group)
}

#[cfg(not(llms_nccl))]
fn new_nccl(_: &CString, _: u16, _: usize, _: usize, _: Duration, _: usize) -> Result<*mut c_void> {
    bail!(
        "this build has no NCCL backend: NCCL's, CUDA's and CCCL's headers were missing when `shared` was \
         compiled (scripts/setup.sh installs them into its Python environment); use --backend gloo"
    )
}

/// `DistributedSampler`'s indices for `rank` in `epoch`: the epoch's order (with `shuffle`,
/// `torch.randperm` on a generator seeded `seed + epoch`, as `set_epoch` makes it), padded
/// by repeating its start to a multiple of `world_size`, then every `world_size`-th index
/// from `rank` on. Every rank gets the same number of samples.
pub fn shard(len: usize, world_size: usize, rank: usize, epoch: usize, seed: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> =
        if shuffle { torch_rng::randperm(len, seed + epoch as u64) } else { (0..len).collect() };
    let total = len.div_ceil(world_size) * world_size;
    let mut i = 0;
    while order.len() < total {
        order.push(order[i % len]);
        i += 1;
    }
    order.into_iter().skip(rank).step_by(world_size).collect()
}

/// One rank's view of a [`DataLoader`] in data-parallel training (a `DataLoader` with a
/// `DistributedSampler`): each epoch's batches are made of [`shard`]'s indices for this
/// rank, in the loader's batch size. The epoch advances when a pass runs to its end, so a
/// partial pass (an evaluation on a few batches) does not move it.
pub struct ShardedLoader<'a> {
    loader: &'a DataLoader,
    rank: usize,
    world_size: usize,
    seed: u64,
    epoch: Cell<usize>,
}

impl<'a> ShardedLoader<'a> {
    pub fn new(loader: &'a DataLoader, group: &ProcessGroup, seed: u64) -> Self {
        Self { loader, rank: group.rank, world_size: group.world_size, seed, epoch: Cell::new(0) }
    }

    fn indices(&self) -> Vec<usize> {
        let len = self.loader.dataset().len();
        shard(len, self.world_size, self.rank, self.epoch.get(), self.seed, self.loader.shuffle())
    }
}

impl BatchSource for ShardedLoader<'_> {
    fn batch_count(&self) -> usize {
        batch_count(self.indices().len(), self.loader.batch_size(), self.loader.drop_last())
    }

    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        let indices = self.indices();
        let batch_size = self.loader.batch_size();
        let count = batch_count(indices.len(), batch_size, self.loader.drop_last());
        let mut next_batch = 0;
        Box::new(std::iter::from_fn(move || {
            if next_batch > count {
                return None;
            }
            next_batch += 1;
            if next_batch > count {
                self.epoch.set(self.epoch.get() + 1);
                return None;
            }
            let start = (next_batch - 1) * batch_size;
            Some(self.loader.collate(&indices[start..(start + batch_size).min(indices.len())]))
        }))
    }

    fn max_token_id(&self) -> Option<i64> {
        self.loader.max_token_id()
    }
}

/// The gradient bucket size `DistributedDataParallel` uses by default (`bucket_cap_mb=25`).
pub const BUCKET_BYTES: usize = 25 << 20;

/// `DistributedDataParallel`'s two jobs for a model's `parameters`: the same starting
/// weights on every rank (rank 0's), and after each `backward` every gradient replaced by
/// its mean over the ranks. Gradients travel in buckets of about [`BUCKET_BYTES`] (GPT-2
/// small: 17 calls instead of one per tensor), each flattened into one tensor.
pub struct DataParallel {
    buckets: Vec<Vec<Tensor>>,
    /// Seconds spent in all-reduce so far, over `steps` calls of `average_gradients`.
    pub communication_seconds: f64,
    pub steps: usize,
}

impl DataParallel {
    /// Broadcasts rank 0's parameters to every rank and groups the parameters into buckets.
    pub fn new(group: &ProcessGroup, parameters: &[Tensor], bucket_bytes: usize) -> Result<Self> {
        tch::no_grad(|| group.broadcast(parameters, 0)).context("broadcasting rank 0's parameters")?;
        let mut buckets: Vec<Vec<Tensor>> = Vec::new();
        let mut bytes = usize::MAX;
        for parameter in parameters.iter().filter(|p| p.requires_grad()) {
            let size = crate::core::tensors::byte_size(parameter) as usize;
            if bytes.saturating_add(size) > bucket_bytes || buckets.is_empty() {
                buckets.push(Vec::new());
                bytes = 0;
            }
            buckets.last_mut().expect("just pushed").push(parameter.shallow_clone());
            bytes += size;
        }
        Ok(Self { buckets, communication_seconds: 0.0, steps: 0 })
    }

    /// Buckets the gradients travel in.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Replaces every gradient by its mean over the ranks (call after `backward`, before the
    /// optimizer step). Every parameter needs a gradient, as `DistributedDataParallel`
    /// requires without `find_unused_parameters`.
    pub fn average_gradients(&mut self, group: &ProcessGroup) -> Result<()> {
        let world = group.world_size as f64;
        let _no_grad = tch::no_grad_guard();
        self.steps += 1;
        for bucket in &self.buckets {
            let mut grads: Vec<Tensor> = bucket.iter().map(Tensor::grad).collect();
            ensure!(
                grads.iter().all(Tensor::defined),
                "a parameter has no gradient: data parallelism needs every parameter in the forward pass"
            );
            let flat = Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0).to_kind(Kind::Float);
            let start = Instant::now();
            group.all_reduce_sum(std::slice::from_ref(&flat))?;
            self.communication_seconds += start.elapsed().as_secs_f64();
            let mean = flat / world;
            let mut offset = 0;
            for grad in &mut grads {
                let n = grad.numel() as i64;
                grad.copy_(&mean.narrow(0, offset, n).view_as(grad).to_kind(grad.kind()));
                offset += n;
            }
        }
        Ok(())
    }
}

/// Starts `nproc` copies of this program with `args` on this machine, each with its
/// `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, a free `MASTER_PORT` on 127.0.0.1 and (unless set)
/// `OMP_NUM_THREADS` = cores / `nproc`, and waits for them. When one fails the others are
/// stopped and the error names it.
pub fn launch(nproc: usize, args: &[String]) -> Result<()> {
    anyhow::ensure!(nproc >= 1, "--nproc-per-node must be at least 1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let program = std::env::current_exe().context("finding this program")?;
    // As torchrun does: the processes share the cores instead of each taking them all.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| (cores / nproc).max(1).to_string());
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..nproc {
        let child = Command::new(&program)
            .args(args)
            .env("OMP_NUM_THREADS", &threads)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank}"))?;
        children.push((rank, child));
    }
    let mut failure = None;
    while !children.is_empty() {
        let mut running = Vec::new();
        for (rank, mut child) in children {
            match child.try_wait()? {
                None => running.push((rank, child)),
                Some(status) if status.success() => {}
                Some(status) => failure = failure.or(Some(format!("rank {rank} failed ({status})"))),
            }
        }
        children = running;
        if failure.is_some() {
            for (_, child) in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match failure {
        Some(message) => bail!("{message}; the other ranks were stopped"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_epoch_like_distributed_sampler() {
        // PyTorch: list(DistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False))
        assert_eq!(shard(5, 2, 0, 0, 0, false), [0, 2, 4]);
        assert_eq!(shard(5, 2, 1, 0, 0, false), [1, 3, 0]);
        // With shuffle the shards split torch.randperm(5) with seed 0 + epoch.
        for epoch in 0..3 {
            let order = torch_rng::randperm(5, epoch as u64);
            let (a, b) = (shard(5, 2, 0, epoch, 0, true), shard(5, 2, 1, epoch, 0, true));
            assert_eq!(a, [order[0], order[2], order[4]]);
            assert_eq!(b, [order[1], order[3], order[0]]);
        }
        assert_eq!(shard(4, 1, 0, 0, 0, false), [0, 1, 2, 3]);
    }
}

//! Section A.9.3: the appendix's `DDP-script.py` on LibTorch's c10d (`shared::train::distributed`):
//! each process joins the group, starts from rank 0's weights, trains on its
//! `DistributedSampler` share of every epoch with gradients averaged over the ranks after
//! `backward`, and rank 0 logs, evaluates and saves. `shared::train::distributed::launch` starts
//! the processes on this machine as `torchrun --nproc-per-node N` does; a process started with `RANK`,
//! `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` set (by hand, on several machines, or by
//! `torchrun --no-python`) joins as that rank.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use shared::core::device::{device_name, seed_everything};
use shared::train::distributed::{shard, Backend, DataParallel, ProcessGroup, Rendezvous, BUCKET_BYTES};
use tch::nn::{self, OptimizerConfig};
use tch::Device;

use crate::mlp::NeuralNetwork;
use crate::toy_data::{self, ToyLoader};
use crate::training::{compute_accuracy, save};

/// The script's settings.
#[derive(Debug, Clone)]
pub struct DdpOptions {
    pub backend: Backend,
    pub epochs: usize,
    /// Examples per rank and step (the global batch is this times the ranks).
    pub batch_size: usize,
    pub lr: f64,
    /// Each rank seeds its model with `seed + rank`: rank 0's weights reach the others only
    /// through the broadcast.
    pub seed: u64,
    /// How long a rank waits for the others, at the start and in every collective.
    pub timeout: Duration,
    pub out_dir: PathBuf,
    /// Also write ranks 1.. 's weights (`ddp-rank<r>.safetensors`), to compare them.
    pub save_every_rank: bool,
}

/// What one rank did.
#[derive(Debug, Clone, Serialize)]
pub struct RankReport {
    pub rank: usize,
    pub world_size: usize,
    /// Where its model computed: its GPU with NCCL (`cuda:LOCAL_RANK`), else the CPU.
    pub device: String,
    pub steps: usize,
    /// The mean loss over the global batch at each step.
    pub losses: Vec<f64>,
    pub seconds: f64,
    pub communication_seconds: f64,
    pub buckets: usize,
    /// Rank 0 only: accuracy on the whole training and test sets.
    pub train_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
}

/// The examples of `rank`'s batches in `epoch`: its shard of the epoch's shuffle (seed 0,
/// `DistributedSampler`'s default) in batches of `batch_size`, the last short one dropped.
pub fn rank_batches(len: usize, world_size: usize, rank: usize, epoch: usize, batch_size: usize) -> Vec<Vec<usize>> {
    let indices = shard(len, world_size, rank, epoch, 0, true);
    indices.chunks(batch_size).filter(|batch| batch.len() == batch_size).map(<[usize]>::to_vec).collect()
}

/// Runs this process's rank of the script.
pub fn run_rank(rendezvous: &Rendezvous, options: &DdpOptions) -> Result<RankReport> {
    let group = ProcessGroup::new(rendezvous, options.backend, options.timeout)?;
    let (rank, world_size) = (group.rank, group.world_size);
    let device = rank_device(options.backend, rendezvous.local_rank);
    seed_everything(options.seed + rank as u64);
    // On the rank's device, its weights drawn on the CPU as the script's `model.to(rank)`
    // draws them (`shared::core::init`).
    let vs = nn::VarStore::new(device);
    let model = NeuralNetwork::new(&vs.root(), 2, 2);
    let mut parallel = DataParallel::new(&group, &vs.trainable_variables(), BUCKET_BYTES)?;
    let mut optimizer = nn::Sgd::default().build(&vs, options.lr)?;
    let train = toy_data::train_set();
    let start = Instant::now();
    let mut losses = Vec::new();
    for epoch in 0..options.epochs {
        for batch in rank_batches(train.len(), world_size, rank, epoch, options.batch_size) {
            let (features, labels) = train.select(&batch);
            let (features, labels) = (features.to_device(device), labels.to_device(device));
            let loss = model.forward(&features).cross_entropy_for_logits(&labels);
            optimizer.zero_grad();
            loss.backward();
            parallel.average_gradients(&group).with_context(|| format!("rank {rank}, epoch {}", epoch + 1))?;
            optimizer.step();
            // The global batch's loss, for rank 0's log.
            let global = loss.detach().view([1]);
            group.all_reduce_sum(std::slice::from_ref(&global))?;
            let global = global.double_value(&[0]) / world_size as f64;
            if rank == 0 {
                println!(
                    "[rank 0 of {world_size}] Epoch: {:03}/{:03} | Batchsize {:03} per rank | Train loss (all ranks): {global:.2}",
                    epoch + 1,
                    options.epochs,
                    batch.len()
                );
            }
            losses.push(global);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (mut train_accuracy, mut test_accuracy) = (None, None);
    if rank == 0 {
        let test = toy_data::test_set();
        train_accuracy = Some(compute_accuracy(&model, &ToyLoader::new(&train, 2, false, false), device));
        test_accuracy = Some(compute_accuracy(&model, &ToyLoader::new(&test, 2, false, false), device));
        save(&vs, &options.out_dir.join("ddp-model.safetensors"))?;
    }
    if options.save_every_rank {
        save(&vs, &rank_weights(&options.out_dir, rank))?;
    }
    group.barrier()?;
    Ok(RankReport {
        rank,
        world_size,
        device: device_name(model.layers[0].ws.device()),
        steps: losses.len(),
        losses,
        seconds,
        communication_seconds: parallel.communication_seconds,
        buckets: parallel.bucket_count(),
        train_accuracy,
        test_accuracy,
    })
}

/// A rank's device: with NCCL the GPU of its index on its machine (`torch.cuda.set_device(rank)`
/// in the script), with Gloo the CPU.
pub fn rank_device(backend: Backend, local_rank: usize) -> Device {
    match backend {
        Backend::Nccl => Device::Cuda(local_rank),
        Backend::Gloo => Device::Cpu,
    }
}

/// Where `--save-every-rank` writes rank `rank`'s weights.
pub fn rank_weights(out_dir: &Path, rank: usize) -> PathBuf {
    out_dir.join(format!("ddp-rank{rank}.safetensors"))
}

/// The same training in one process: each step's batch is the union of every rank's batch,
/// the model rank 0's. Data parallelism must give these weights, up to float rounding.
pub fn train_single_process(world_size: usize, options: &DdpOptions) -> Result<(nn::VarStore, NeuralNetwork)> {
    seed_everything(options.seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = NeuralNetwork::new(&vs.root(), 2, 2);
    let mut optimizer = nn::Sgd::default().build(&vs, options.lr)?;
    let train = toy_data::train_set();
    for epoch in 0..options.epochs {
        let per_rank: Vec<Vec<Vec<usize>>> = (0..world_size)
            .map(|rank| rank_batches(train.len(), world_size, rank, epoch, options.batch_size))
            .collect();
        for step in 0..per_rank[0].len() {
            let global: Vec<usize> = per_rank.iter().flat_map(|batches| batches[step].clone()).collect();
            let (features, labels) = train.select(&global);
            let loss = model.forward(&features).cross_entropy_for_logits(&labels);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
    }
    Ok((vs, model))
}

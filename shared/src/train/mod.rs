//! Chapter 5's pretraining machinery: losses (section 5.1), the AdamW optimizer with a state
//! that can be saved, checkpoints (section 5.4) and the training loop (section 5.2), which
//! takes its loss as a parameter and can warm up, decay and clip (appendix D); chapter 6's
//! [`classifier`] training, and appendix A's data-parallel [`distributed`] training.

mod adamw;
mod checkpoint;
pub mod classifier;
pub mod distributed;
mod loop_;
mod loss;
mod mode;
mod schedule;

pub use adamw::{AdamW, AdamWConfig};
pub use checkpoint::{Checkpoint, CheckpointMeta, CHECKPOINT_FORMAT, PAUSE_IN_RENAMES_VAR};
pub use loop_::{
    progress_bar, sample_text, sample_text_with, train_model, train_model_simple, Evaluation, TrainHistory, TrainHooks,
    TrainProgress, TrainSettings,
};
pub use loss::{
    calc_loss_batch, calc_loss_loader, check_token_ids, cross_entropy, mean_over_batches, perplexity, DistillationLoss,
    MultiTokenLoss, NextTokenLoss, TrainingLoss, IGNORE_INDEX,
};
pub use mode::TrainMode;
pub use schedule::{AppendixD, LrDecay, StepSchedule, WarmupCosine};

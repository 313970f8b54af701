//! The top layer: what turns the library into the chapters' programs. Behind the default
//! `app` feature, so the library builds without `clap` and `plotters`.
//!
//! | module | book | holds |
//! |---|---|---|
//! | [`cli`] | all | the flags every binary takes (`--device`, `--seed`, `--out-dir`, `--data`) and the run context |
//! | [`choices`] | all | the command-line names of the library's enums (`--mode book`, `--trainable last-block`) |
//! | [`exercise`] | all | the exercise registry behind every crate's `list` and `exercise <id>` |
//! | [`model_source`] | 5-7 | `--checkpoint`, `--weights` or a fresh seeded model; the fine-tuning runs' `--init` |
//! | [`plot`] | 4-7 | PNG line charts |
//! | [`recipe`] | 5-7, 21 | one recipe for a training run: the training flags with each chapter's defaults, the optimizer, the reporter |
//! | [`report`] | 5-7 | a training run's loss plot |
//! | [`finetune`] | 6, E | chapter 6's spam fine-tuning run, which appendix E repeats with LoRA |

pub mod choices;
pub mod cli;
pub mod exercise;
pub mod finetune;
pub mod model_source;
pub mod plot;
pub mod recipe;
pub mod report;

//! Chapter 6's exercises: each is the main run with other flags, compared with the main run.
//! They start from the command line's run flags (`--init`, `--config`, `--limit`, ...), so
//! `--init random --config FILE --limit 200 exercise 6.2` is a quick experiment.

pub mod ex6_1;
pub mod ex6_2;
pub mod ex6_3;

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::ExerciseContext;

use shared::app::finetune::{self, Accuracies, FinetuneOptions};

/// Every exercise of the chapter, in book order.
pub const ALL: &[Exercise] = &[ex6_1::EXERCISE, ex6_2::EXERCISE, ex6_3::EXERCISE];

/// What an exercise receives: the run's context and the binary's run flags, the settings
/// the exercises start from (the book's by default).
pub type Context = ExerciseContext<FinetuneOptions>;

/// A chapter 6 exercise.
pub type Exercise = shared::app::exercise::Exercise<Context>;

/// The main setting and one variant, fine-tuned in turn (outputs in `main/` and `variant/`
/// under the output folder).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub variant: String,
    pub main: Accuracies,
    pub changed: Accuracies,
    pub main_minutes: f64,
    pub changed_minutes: f64,
}

pub fn compare(context: &Context, variant: &str, change: impl FnOnce(&mut FinetuneOptions)) -> Result<Comparison> {
    let main_options = context.flags.clone();
    let mut changed_options = main_options.clone();
    change(&mut changed_options);
    let in_dir = |name: &str| RunContext { out_dir: context.out_dir.join(name), ..context.run.clone() };
    let main = finetune::run(&in_dir("main"), &main_options)?;
    let changed = finetune::run(&in_dir("variant"), &changed_options)?;
    Ok(Comparison {
        variant: variant.to_string(),
        main: main.accuracies,
        changed: changed.accuracies,
        main_minutes: main.history.train_seconds / 60.0,
        changed_minutes: changed.history.train_seconds / 60.0,
    })
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<34} {:>8} {:>10} {:>8} {:>9}", "setting", "train", "validation", "test", "minutes")?;
        for (name, a, minutes) in [
            ("main (book's settings)", &self.main, self.main_minutes),
            (self.variant.as_str(), &self.changed, self.changed_minutes),
        ] {
            writeln!(
                f,
                "{name:<34} {:>7.2}% {:>9.2}% {:>7.2}% {minutes:>9.1}",
                a.train * 100.0,
                a.validation * 100.0,
                a.test * 100.0
            )?;
        }
        Ok(())
    }
}

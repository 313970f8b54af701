//! The exercise registry behind every chapter binary's `list` and `exercise <id> [--json]`.
//!
//! Each exercise lives in its own file, returns a result struct (serde + `Display`) that
//! tests assert on, and registers itself with an [`Exercise`] entry; a crate's list is the
//! slice of those entries, so the CLI, the README table and the tests cannot drift apart.

use std::fmt::{Display, Write};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::app::cli::RunContext;

/// One exercise: its id as the book numbers it, a one-line summary, and how to run it with
/// the binary's context `C`: the run's [`RunContext`], or an [`ExerciseContext`] for
/// chapters whose exercises also take the binary's flags.
pub struct Exercise<C: 'static = RunContext> {
    pub id: &'static str,
    pub summary: &'static str,
    pub run: fn(&C) -> Result<Report>,
}

impl<C> Clone for Exercise<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Exercise<C> {}

/// What an exercise of a chapter with run flags receives: the run's context and the flags
/// its binary parsed (chapters 6 and 7 start their exercises from the main run's settings,
/// chapter 21's decoding and analysis exercises from its model flags). It dereferences to
/// the [`RunContext`], so an exercise that needs no flags reads it as one.
#[derive(Debug, Clone)]
pub struct ExerciseContext<F> {
    pub run: RunContext,
    pub flags: F,
}

impl<F> std::ops::Deref for ExerciseContext<F> {
    type Target = RunContext;

    fn deref(&self) -> &RunContext {
        &self.run
    }
}

/// An exercise's result, as text for people and as JSON for tools.
#[derive(Debug, Clone)]
pub struct Report {
    pub text: String,
    pub json: serde_json::Value,
}

impl Report {
    pub fn new<T: Serialize + Display>(result: &T) -> Result<Self> {
        Ok(Self { text: result.to_string(), json: serde_json::to_value(result)? })
    }
}

/// The entry with this id, or an error that lists the known ids.
pub fn find<'a, C>(exercises: &'a [Exercise<C>], id: &str) -> Result<&'a Exercise<C>> {
    match exercises.iter().find(|exercise| exercise.id == id) {
        Some(exercise) => Ok(exercise),
        None => {
            let known: Vec<&str> = exercises.iter().map(|exercise| exercise.id).collect();
            bail!("unknown exercise id '{id}'; this chapter has: {}", known.join(", "))
        }
    }
}

/// The `list` output: one line per exercise.
pub fn list<C>(exercises: &[Exercise<C>]) -> String {
    let width = exercises.iter().map(|exercise| exercise.id.len()).max().unwrap_or(0);
    exercises.iter().fold(String::new(), |mut out, exercise| {
        let _ = writeln!(out, "{:width$}  {}", exercise.id, exercise.summary);
        out
    })
}

/// `list` and `exercise <id> [--json]`, flattened into every binary's commands
/// (`#[command(flatten)] Exercises(ExerciseCommand)`).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ExerciseCommand {
    /// List the chapter's exercises
    List,
    /// Run one exercise by id (see `list`)
    Exercise {
        /// Exercise id, as the book numbers it (e.g. 2.1, A.1)
        id: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

impl ExerciseCommand {
    /// Prints the list or the exercise's result.
    pub fn run<C>(&self, exercises: &[Exercise<C>], context: &C) -> Result<()> {
        match self {
            Self::List => print!("{}", list(exercises)),
            Self::Exercise { id, json } => println!("{}", run(exercises, id, *json, context)?),
        }
        Ok(())
    }

    /// [`ExerciseCommand::run`] for exercises that take the binary's flags: `flags(json)`
    /// builds them for `exercise` (`json`: whether stdout must carry the result alone), and
    /// `list` runs without building them.
    pub fn run_with_flags<F: Default>(
        &self,
        exercises: &[Exercise<ExerciseContext<F>>],
        run: RunContext,
        flags: impl FnOnce(bool) -> Result<F>,
    ) -> Result<()> {
        let flags = match self {
            Self::List => F::default(),
            Self::Exercise { json, .. } => flags(*json)?,
        };
        self.run(exercises, &ExerciseContext { run, flags })
    }
}

/// The README table rows (`| id | summary |`) missing from `readme` for these exercises;
/// each crate's tests call this so that the README cannot drift from the code.
pub fn missing_readme_rows<C>(exercises: &[Exercise<C>], readme: &str) -> Vec<String> {
    exercises
        .iter()
        .map(|exercise| format!("| {} | {} |", exercise.id, exercise.summary))
        .filter(|row| !readme.contains(row.as_str()))
        .collect()
}

/// Runs exercise `id` and renders its report as text or pretty JSON.
pub fn run<C>(exercises: &[Exercise<C>], id: &str, json: bool, context: &C) -> Result<String> {
    let report = (find(exercises, id)?.run)(context)?;
    Ok(if json { serde_json::to_string_pretty(&report.json)? } else { report.text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Answer {
        value: u32,
    }

    impl Display for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "the answer is {}", self.value)
        }
    }

    const EXERCISES: &[Exercise] =
        &[Exercise { id: "1.1", summary: "answers", run: |_| Report::new(&Answer { value: 42 }) }];

    #[test]
    fn runs_by_id_as_text_or_json() {
        let context = RunContext::for_tests();
        assert_eq!(run(EXERCISES, "1.1", false, &context).unwrap(), "the answer is 42");
        let json: serde_json::Value = serde_json::from_str(&run(EXERCISES, "1.1", true, &context).unwrap()).unwrap();
        assert_eq!(json["value"], 42);
    }

    #[test]
    fn unknown_ids_list_the_known_ones() {
        let err = run(EXERCISES, "9.9", false, &RunContext::for_tests()).unwrap_err().to_string();
        assert_eq!(err, "unknown exercise id '9.9'; this chapter has: 1.1");
        assert_eq!(list(EXERCISES), "1.1  answers\n");
    }

    #[test]
    fn readme_rows_are_checked() {
        assert!(missing_readme_rows(EXERCISES, "| 1.1 | answers |").is_empty());
        assert_eq!(missing_readme_rows(EXERCISES, "| 1.1 | other |"), ["| 1.1 | answers |"]);
    }
}

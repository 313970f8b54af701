//! The exercise registry behind every chapter binary's `list` and `exercise <id> [--json]`.
//!
//! Each exercise lives in its own file, returns a result struct (serde + `Display`) that
//! tests assert on, and registers itself with an [`Exercise`] entry; a crate's list is the
//! slice of those entries, so the CLI, the README table and the tests cannot drift apart.

use std::fmt::{Display, Write};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cli::RunContext;

/// One exercise: its id as the book numbers it, a one-line summary, and how to run it.
#[derive(Clone, Copy)]
pub struct Exercise {
    pub id: &'static str,
    pub summary: &'static str,
    pub run: fn(&RunContext) -> Result<Report>,
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

/// The run flags a binary hands to its exercises, for chapters whose exercises are the main
/// run with one setting changed (6 and 7): `exercise 6.2 --init random --config FILE` then
/// starts from a small model instead of GPT-2. Unset, the exercises use the book's settings.
pub struct RunFlags<T>(std::sync::OnceLock<T>);

impl<T: Clone + Default> RunFlags<T> {
    pub const fn new() -> Self {
        Self(std::sync::OnceLock::new())
    }

    /// Sets the flags (the first call wins).
    pub fn set(&self, options: T) {
        let _ = self.0.set(options);
    }

    /// The flags given, or the defaults (the book's settings).
    pub fn get(&self) -> T {
        self.0.get().cloned().unwrap_or_default()
    }
}

impl<T: Clone + Default> Default for RunFlags<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The entry with this id, or an error that lists the known ids.
pub fn find<'a>(exercises: &'a [Exercise], id: &str) -> Result<&'a Exercise> {
    match exercises.iter().find(|exercise| exercise.id == id) {
        Some(exercise) => Ok(exercise),
        None => {
            let known: Vec<&str> = exercises.iter().map(|exercise| exercise.id).collect();
            bail!("unknown exercise id '{id}'; this chapter has: {}", known.join(", "))
        }
    }
}

/// The `list` output: one line per exercise.
pub fn list(exercises: &[Exercise]) -> String {
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
    pub fn run(&self, exercises: &[Exercise], context: &RunContext) -> Result<()> {
        match self {
            Self::List => print!("{}", list(exercises)),
            Self::Exercise { id, json } => println!("{}", run(exercises, id, *json, context)?),
        }
        Ok(())
    }
}

/// The README table rows (`| id | summary |`) missing from `readme` for these exercises;
/// each crate's tests call this so that the README cannot drift from the code.
pub fn missing_readme_rows(exercises: &[Exercise], readme: &str) -> Vec<String> {
    exercises
        .iter()
        .map(|exercise| format!("| {} | {} |", exercise.id, exercise.summary))
        .filter(|row| !readme.contains(row.as_str()))
        .collect()
}

/// Runs exercise `id` and renders its report as text or pretty JSON.
pub fn run(exercises: &[Exercise], id: &str, json: bool, context: &RunContext) -> Result<String> {
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

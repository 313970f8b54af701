//! Exercise 21.35: knowledge distillation (Hinton et al. 2015). The large model is the
//! teacher; 2-layer students of the small model's shape and budget train with
//! `(1 - lambda)` cross-entropy plus `lambda T^2 KL(teacher_T || student_T)`
//! ([`shared::train::DistillationLoss`]) at temperatures 1, 2, 4 and 8, next to the same
//! student trained on cross-entropy alone (lambda 0). Each is judged by its validation loss
//! (cross-entropy, comparable across runs) and a greedy sample.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::{Context, Exercise};
use shared::generate::{generate_text_cached, Sampler, Sampling};

use crate::minigpt::{split_loss, Distill};
use crate::models::{self, Budget, Sizes};
use crate::quality::one_line;

pub const EXERCISE: Exercise = Exercise {
    id: "21.35",
    summary: "knowledge distillation: 2-layer students of the 6-layer teacher trained with lambda 0.5 at temperatures 1, 2, 4 and 8 against one trained on cross-entropy alone: validation loss and samples",
    run: |context| Report::new(&run(context, &Budget::from_flags(&context.flags), Sizes::STANDARD, 0.5, 50)?),
};

pub const TEMPERATURES: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `None`: cross-entropy alone.
    pub temperature: Option<f64>,
    pub weight: f64,
    pub validation_loss: f64,
    pub sample: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_35 {
    pub teacher: String,
    pub teacher_validation_loss: f64,
    pub student: String,
    pub validation_batches: usize,
    pub rows: Vec<Row>,
}

/// The students: cross-entropy alone, then `weight` of distillation at each temperature.
pub fn run(
    context: &Context,
    budget: &Budget,
    sizes: Sizes,
    weight: f64,
    validation_batches: usize,
) -> Result<Ex21_35> {
    let teacher = models::large(context, &context.flags, budget)?;
    let text = budget.corpus(context)?;
    let prompt = sizes.prompts(context, budget)?.remove(0);
    let train_ratio = budget.small.train_ratio;
    let loss = |model: &shared::model::GptModel| {
        split_loss(model, &text, train_ratio, false, validation_batches, context.seed)
    };
    let mut rows = Vec::new();
    let mut student_name = String::new();
    for temperature in std::iter::once(None).chain(TEMPERATURES.map(Some)) {
        let mut options = budget.small.clone();
        options.tokenizer_spec = Some(teacher.gpt().cfg.tokenizer.clone());
        options.distill =
            temperature.map(|temperature| Distill { teacher: teacher.source.clone(), temperature, weight });
        // Cross-entropy alone is the small model the other exercises use.
        let role = match temperature {
            None => "small".to_string(),
            Some(t) => format!("student-t{t}-w{weight}"),
        };
        let student = models::trained(context, &role, &options, &text)?;
        let mut sampler = Sampler::new(&Sampling::GREEDY)?;
        let sample = generate_text_cached(student.gpt(), &prompt, sizes.new_tokens.min(100), &mut sampler)?.text;
        rows.push(Row {
            temperature,
            weight: if temperature.is_some() { weight } else { 0.0 },
            validation_loss: loss(student.gpt())?,
            sample: one_line(&sample, 90),
        });
        student_name = student.name;
    }
    Ok(Ex21_35 {
        teacher_validation_loss: loss(teacher.gpt())?,
        teacher: teacher.name,
        student: student_name,
        validation_batches,
        rows,
    })
}

impl fmt::Display for Ex21_35 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Teacher: {} (validation loss {:.3}); students: {}; validation loss over {} batches",
            self.teacher, self.teacher_validation_loss, self.student, self.validation_batches
        )?;
        writeln!(f, "| student | validation loss | greedy sample |")?;
        writeln!(f, "|---|---:|---|")?;
        for row in &self.rows {
            let name = match row.temperature {
                None => "cross-entropy alone".to_string(),
                Some(t) => format!("distilled, T = {t}, lambda = {}", row.weight),
            };
            writeln!(f, "| {name} | {:.3} | {} |", row.validation_loss, row.sample)?;
        }
        Ok(())
    }
}

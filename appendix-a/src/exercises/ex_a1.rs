//! Exercises A.1 and A.3: the trainable parameters of `NeuralNetwork(2, 2)`.

use std::fmt;

use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use tch::{nn, Device};

use crate::mlp::{parameter_formula, NeuralNetwork};

pub const EXERCISE: Exercise = Exercise {
    id: "A.1",
    summary: "trainable parameters of NeuralNetwork(2, 2): 752, by counting and by formula",
    run: |_| Report::new(&run()),
};

pub const EXERCISE_A3: Exercise =
    Exercise { id: "A.3", summary: "the same question as A.1 (asked twice in the book)", ..EXERCISE };

#[derive(Debug, Clone, Serialize)]
pub struct ExA1 {
    pub num_inputs: i64,
    pub num_outputs: i64,
    /// Summed over the model's variables.
    pub counted: i64,
    /// `2*30 + 30 + 30*20 + 20 + 20*2 + 2`.
    pub by_formula: i64,
}

pub fn run() -> ExA1 {
    let (num_inputs, num_outputs) = (2, 2);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = NeuralNetwork::new(&vs.root(), num_inputs, num_outputs);
    let counted: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    debug_assert_eq!(counted, model.num_parameters());
    ExA1 { num_inputs, num_outputs, counted, by_formula: parameter_formula(num_inputs, num_outputs) }
}

impl fmt::Display for ExA1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "NeuralNetwork({}, {}): {} trainable parameters", self.num_inputs, self.num_outputs, self.counted)?;
        write!(f, "By formula: 2*30 + 30 + 30*20 + 20 + 20*2 + 2 = {}", self.by_formula)
    }
}

//! Exercise 4.1: parameters of a transformer block's feed-forward module against its
//! attention module (GPT-2 small).

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::model::{GptConfig, TransformerBlock};
use tch::{nn, Device};

pub const EXERCISE: Exercise = Exercise {
    id: "4.1",
    summary: "parameters of one GPT-2 small block: feed-forward 4,722,432 vs attention 2,360,064",
    run: |_| Report::new(&run()?),
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex4_1 {
    pub feed_forward: i64,
    pub attention: i64,
    pub ratio: f64,
}

/// Counts the variables of a freshly built block by module.
pub fn run() -> Result<Ex4_1> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _block = TransformerBlock::new(&vs.root(), &GptConfig::gpt2_small())?;
    let count = |prefix: &str| -> i64 {
        vs.variables().iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, t)| t.numel() as i64).sum()
    };
    let (feed_forward, attention) = (count("ff."), count("att."));
    Ok(Ex4_1 { feed_forward, attention, ratio: feed_forward as f64 / attention as f64 })
}

impl fmt::Display for Ex4_1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Total number of parameters in feed forward module: {}", self.feed_forward)?;
        writeln!(f, "Total number of parameters in attention module: {}", self.attention)?;
        write!(f, "The feed-forward module has {:.2}x as many", self.ratio)
    }
}

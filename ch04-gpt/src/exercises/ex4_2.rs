//! Exercise 4.2: sizes of the four GPT-2 models, computed from their configurations
//! (nothing is allocated, so GPT-2 XL costs nothing to count).

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::model::{GptConfig, ParameterCounts};

pub const EXERCISE: Exercise = Exercise {
    id: "4.2",
    summary: "total parameters, parameters with weight tying and float32 size of GPT-2 small, medium, large and XL",
    run: |_| Report::new(&run()?),
};

#[derive(Debug, Clone, Serialize)]
pub struct ModelSize {
    pub preset: String,
    pub total_parameters: i64,
    pub with_weight_tying: i64,
    pub size_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex4_2 {
    pub models: Vec<ModelSize>,
}

pub fn run() -> Result<Ex4_2> {
    let models = shared::model::PRESETS
        .iter()
        .map(|&preset| -> Result<ModelSize> {
            let counts = ParameterCounts::from_config(&GptConfig::preset(preset)?);
            Ok(ModelSize {
                preset: preset.to_string(),
                total_parameters: counts.total(),
                with_weight_tying: counts.with_weight_tying(),
                size_mb: (counts.size_mb_f32() * 100.0).round() / 100.0,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Ex4_2 { models })
}

impl fmt::Display for Ex4_2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<12} {:>15} {:>20} {:>12}", "model", "parameters", "with weight tying", "float32 MB")?;
        for (i, m) in self.models.iter().enumerate() {
            write!(f, "{:<12} {:>15} {:>20} {:>12.2}", m.preset, m.total_parameters, m.with_weight_tying, m.size_mb)?;
            if i + 1 < self.models.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

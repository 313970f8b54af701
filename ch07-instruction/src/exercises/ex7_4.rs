//! Exercise 7.4: LoRA instead of full fine-tuning (appendix E's adapters on every linear
//! layer, rank 16, alpha 16): far fewer trainable parameters and a faster epoch.

use shared::app::exercise::Report;
use shared::model::lora::LoraConfig;

use super::{compare, Exercise};

/// The exercise's adapter size.
pub const LORA: LoraConfig = LoraConfig { rank: 16, alpha: 16.0 };

pub const EXERCISE: Exercise = Exercise {
    id: "7.4",
    summary: "LoRA fine-tuning (rank 16, alpha 16): trainable parameters and time per epoch against full fine-tuning",
    run: |context| {
        let base = &context.flags;
        Report::new(&compare(context, base, "LoRA rank 16, alpha 16", |o| o.lora = Some(LORA))?)
    },
};

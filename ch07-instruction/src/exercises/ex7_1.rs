//! Exercise 7.1: the Phi-3 prompt template instead of Alpaca's: shorter examples, so fewer
//! tokens per epoch and a faster one, and its own response extraction.

use shared::app::exercise::Report;

use super::{compare, Exercise};
use crate::template::TemplateKind;

pub const EXERCISE: Exercise = Exercise {
    id: "7.1",
    summary: "fine-tune with the Phi-3 template and compare token counts and time per epoch with Alpaca's",
    run: |context| {
        let base = &context.flags;
        Report::new(&compare(context, base, "Phi-3 template", |o| o.template = TemplateKind::Phi3)?)
    },
};

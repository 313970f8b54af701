//! The small random model (`configs/small.json`) the server tests serve, the same weights
//! whenever it is built (so a server's replies can be compared with `respond`'s).

use ch07_instruction::finetune::InstructionModel;
use ch07_instruction::serve::{self, RunningServer, ServeOptions};
use ch07_instruction::template::TemplateKind;
use shared::app::cli::RunContext;
use shared::app::model_source::Init;
use shared::core::device::global_rng_lock;

pub const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/small.json");

/// The model every server here and `respond` use: the same seed gives the same weights.
pub fn small_model() -> anyhow::Result<InstructionModel> {
    let loaded = Init::Random(CONFIG.into()).load(&RunContext::for_tests(), Some(0.0))?;
    Ok(InstructionModel { loaded, template: TemplateKind::Alpaca })
}

/// A server of the small model with `options`.
pub fn start(options: ServeOptions) -> RunningServer {
    let _rng = global_rng_lock(); // the model is built on the server's thread
    serve::start(small_model, options).unwrap()
}

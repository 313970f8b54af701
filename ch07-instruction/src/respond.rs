//! Section 7.7: responses of a fine-tuned model. The prompt is formatted with the template
//! the model was trained with, decoded greedily with a KV cache until the end-of-text token
//! (or `max_new_tokens`), and the response is cut out of the generated text.

use anyhow::{Context, Result};
use shared::generate::generate_greedy_cached;
use shared::gpt::GptModel;
use shared::tokenizer::{Gpt2Tokenizer, TokenId, END_OF_TEXT_ID};
use shared::train::progress_bar;
use tch::{Device, Tensor};

use crate::records::InstructionRecord;
use crate::template::PromptTemplate;

/// The book's limit on a response's length.
pub const MAX_NEW_TOKENS: i64 = 256;

/// The model's response to `record`: the book's `generate(..., eos_id=50256)` at temperature
/// 0, then the text after the prompt without the response marker. A prompt longer than the
/// model's context is an error.
pub fn respond(
    model: &GptModel,
    template: &dyn PromptTemplate,
    record: &InstructionRecord,
    max_new_tokens: i64,
    device: Device,
) -> Result<String> {
    let prompt = template.format_input(record);
    let generated = continue_text(model, &prompt, max_new_tokens, device)?;
    Ok(template.extract_response(&generated, &prompt))
}

/// `prompt` followed by up to `max_new_tokens` greedy tokens, stopping at end-of-text.
pub fn continue_text(model: &GptModel, prompt: &str, max_new_tokens: i64, device: Device) -> Result<String> {
    let tokenizer = Gpt2Tokenizer::new();
    let ids: Vec<i64> = tokenizer.encode(prompt).into_iter().map(i64::from).collect();
    let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(device);
    let out = generate_greedy_cached(model, &idx, max_new_tokens, Some(END_OF_TEXT_ID as i64))?;
    let out: Vec<TokenId> =
        Vec::<i64>::try_from(out.get(0).to_device(Device::Cpu))?.iter().map(|&t| t as TokenId).collect();
    // tiktoken decodes with errors="replace"; a response may end inside a character.
    Ok(String::from_utf8_lossy(&tokenizer.decode_bytes(&out)?).into_owned())
}

/// Section 7.7: every record with its `model_response`, with a progress bar when `verbose`.
pub fn respond_all(
    model: &GptModel,
    template: &dyn PromptTemplate,
    records: &[InstructionRecord],
    max_new_tokens: i64,
    device: Device,
    verbose: bool,
) -> Result<Vec<InstructionRecord>> {
    let bar = progress_bar(verbose, records.len() as u64);
    bar.set_message("generating responses");
    let mut answered = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let response = respond(model, template, record, max_new_tokens, device)
            .with_context(|| format!("responding to test record {index}"))?;
        answered.push(InstructionRecord { model_response: Some(response), ..record.clone() });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(answered)
}

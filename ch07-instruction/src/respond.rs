//! Section 7.7: responses of a fine-tuned model. The prompt is formatted with the template
//! the model was trained with, decoded greedily with a KV cache until the end-of-text token
//! (or `max_new_tokens`; any other [`Decoding`] on request), and the response is cut out of
//! the generated text.

use anyhow::{Context, Result};
use shared::generate::{Decoding, Sampler, Sampling};
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
    respond_with(model, template, record, max_new_tokens, device, &mut book_decoding())
}

/// The book's decoding of responses: greedy, until the end-of-text token.
pub fn book_decoding() -> Decoding {
    Decoding::Sample(
        Sampler::new(&Sampling { eos_id: Some(END_OF_TEXT_ID as i64), ..Sampling::GREEDY })
            .expect("greedy decoding is a valid setting"),
    )
}

/// [`respond`] with any decoding (sampling, top-p, a repetition penalty, beam search, ...);
/// it should stop at the end-of-text token, as [`book_decoding`] does.
pub fn respond_with(
    model: &GptModel,
    template: &dyn PromptTemplate,
    record: &InstructionRecord,
    max_new_tokens: i64,
    device: Device,
    decoding: &mut Decoding,
) -> Result<String> {
    let prompt = template.format_input(record);
    let tokenizer = Gpt2Tokenizer::new();
    let ids: Vec<i64> = tokenizer.encode(&prompt).into_iter().map(i64::from).collect();
    let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(device);
    let out = decoding.generate(model, &idx, max_new_tokens)?;
    let out: Vec<TokenId> =
        Vec::<i64>::try_from(out.get(0).to_device(Device::Cpu))?.iter().map(|&t| t as TokenId).collect();
    // tiktoken decodes with errors="replace"; a response may end inside a character.
    let generated = String::from_utf8_lossy(&tokenizer.decode_bytes(&out)?).into_owned();
    Ok(template.extract_response(&generated, &prompt))
}

/// Section 7.7: every record with its `model_response`, with a progress bar when `verbose`.
pub fn respond_all(
    model: &GptModel,
    template: &dyn PromptTemplate,
    records: &[InstructionRecord],
    max_new_tokens: i64,
    device: Device,
    decoding: &mut Decoding,
    verbose: bool,
) -> Result<Vec<InstructionRecord>> {
    let bar = progress_bar(verbose, records.len() as u64);
    bar.set_message("generating responses");
    let mut answered = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let response = respond_with(model, template, record, max_new_tokens, device, decoding)
            .with_context(|| format!("responding to test record {index}"))?;
        answered.push(InstructionRecord { model_response: Some(response), ..record.clone() });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(answered)
}

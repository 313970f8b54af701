//! Section 7.7: responses of a fine-tuned model. The prompt is formatted with the template
//! the model was trained with, decoded greedily with a KV cache until the end-of-text token
//! (or `max_new_tokens`; any other [`Decoding`] on request), and the response is cut out of
//! the generated text.

use anyhow::{Context, Result};
use shared::generate::batch::generate_batch;
use shared::generate::{Decoding, Sampler, Sampling};
use shared::model::GptModel;
use shared::tokenizer::{TokenId, Tokenizer, END_OF_TEXT_ID};
use shared::train::progress_bar;
use tch::{Device, Tensor};

use crate::records::InstructionRecord;
use crate::template::PromptTemplate;

/// The book's limit on a response's length.
pub const MAX_NEW_TOKENS: i64 = 256;

/// The model's response to `record`: the book's `generate(..., eos_id=50256)` at temperature
/// 0 (the model's own end-of-text token for other tokenizers), then the text after the prompt
/// without the response marker. A prompt longer than the model's context is an error.
pub fn respond(
    model: &GptModel,
    template: &dyn PromptTemplate,
    record: &InstructionRecord,
    max_new_tokens: i64,
    device: Device,
) -> Result<String> {
    respond_with(model, template, record, max_new_tokens, device, &mut greedy_decoding(model)?)
}

/// The book's decoding of responses: greedy, until the end-of-text token of `model`'s
/// tokenizer (GPT-2's 50256 in the book; any of an instruction model's stop tokens).
pub fn greedy_decoding(model: &GptModel) -> Result<Decoding> {
    let sampling = Sampling { eos_id: Some(i64::from(END_OF_TEXT_ID)), ..Sampling::GREEDY };
    let mut decoding = Decoding::Sample(Sampler::new(&sampling).expect("greedy decoding is a valid setting"));
    decoding.stop_at_model_stops(model)?;
    Ok(decoding)
}

/// [`respond`] with any decoding (sampling, top-p, a repetition penalty, beam search, ...);
/// it should stop at the end-of-text token, as [`greedy_decoding`] does.
pub fn respond_with(
    model: &GptModel,
    template: &dyn PromptTemplate,
    record: &InstructionRecord,
    max_new_tokens: i64,
    device: Device,
    decoding: &mut Decoding,
) -> Result<String> {
    let tokenizer = model.cfg.tokenizer.build()?;
    let ids = prompt_ids(template, tokenizer.as_ref(), record)?;
    let idx = Tensor::from_slice(&ids).view([1, -1]).to_device(device);
    let out = decoding.generate(model, &idx, max_new_tokens)?;
    let out = Vec::<i64>::try_from(out.get(0).to_device(Device::Cpu))?;
    response_in(template, tokenizer.as_ref(), ids.len(), &out)
}

/// The ids of `record`'s prompt.
fn prompt_ids(
    template: &dyn PromptTemplate,
    tokenizer: &dyn Tokenizer,
    record: &InstructionRecord,
) -> Result<Vec<i64>> {
    template.encode_ids(tokenizer, &template.format_input(record))
}

/// The response in the generated tokens `ids`, whose first `prompt_len` are the prompt:
/// the book cuts the decoded prompt's length off the decoded text (special tokens, which a
/// chat template writes into the prompt, are left out of both).
fn response_in(
    template: &dyn PromptTemplate,
    tokenizer: &dyn Tokenizer,
    prompt_len: usize,
    ids: &[i64],
) -> Result<String> {
    let ids: Vec<TokenId> = ids.iter().map(|&t| t as TokenId).collect();
    // A response may end inside a character.
    let generated = tokenizer.decode_lossy(&ids)?;
    let prompt = tokenizer.decode_lossy(&ids[..prompt_len.min(ids.len())])?;
    Ok(template.extract_response(&generated, &prompt))
}

/// Records [`respond_all`] decodes together.
pub const RESPONSE_BATCH: usize = 8;

/// The responses to `records`, decoded together over the KV cache
/// ([`shared::generate::batch`]) when the decoding samples token by token and every prompt
/// fits the context with `max_new_tokens` more; otherwise one at a time. Greedy responses
/// are the same either way (sampled ones draw from the generator in another order).
pub fn respond_batch(
    model: &GptModel,
    template: &dyn PromptTemplate,
    records: &[InstructionRecord],
    max_new_tokens: i64,
    device: Device,
    decoding: &mut Decoding,
) -> Result<Vec<String>> {
    let tokenizer = model.cfg.tokenizer.build()?;
    let ids: Vec<Vec<i64>> =
        records.iter().map(|record| prompt_ids(template, tokenizer.as_ref(), record)).collect::<Result<_>>()?;
    let longest = ids.iter().map(Vec::len).max().unwrap_or(0) as i64;
    match decoding {
        Decoding::Sample(sampler) if records.len() > 1 && longest + max_new_tokens <= model.cfg.context_length => {
            let new = generate_batch(model, &ids, max_new_tokens, sampler)?;
            ids.into_iter()
                .zip(new)
                .map(|(prompt, new)| response_in(template, tokenizer.as_ref(), prompt.len(), &[prompt, new].concat()))
                .collect()
        }
        _ => records
            .iter()
            .map(|record| respond_with(model, template, record, max_new_tokens, device, decoding))
            .collect(),
    }
}

/// Section 7.7: every record with its `model_response`, with a progress bar when `verbose`;
/// [`RESPONSE_BATCH`] records at a time ([`respond_batch`]).
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
    for (chunk, batch) in records.chunks(RESPONSE_BATCH).enumerate() {
        let first = chunk * RESPONSE_BATCH;
        let responses = respond_batch(model, template, batch, max_new_tokens, device, decoding)
            .with_context(|| format!("responding to test records {first}-{}", first + batch.len() - 1))?;
        for (record, response) in batch.iter().zip(responses) {
            answered.push(InstructionRecord { model_response: Some(response), ..record.clone() });
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(answered)
}

//! The chapter's main run: sections 2.2-2.8 on The Verdict, computing what the book prints.

use std::fmt;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::core::tensors::{format_rows, rows_f32, rows_i64};
use shared::data::dataset::{create_dataloader_v1, LoaderConfig};
use shared::data::THE_VERDICT;
use shared::tokenizer::{Gpt2Tokenizer, TokenId};
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::simple_tokenizer::{split_text, SimpleTokenizerV1, SimpleTokenizerV2, Vocabulary};

/// Section 2.3's sample sentence.
pub const V1_SAMPLE: &str = "\"It's the last he painted, you know,\" Mrs. Gisburn said with pardonable pride.";
/// Section 2.3's sentence with words V1 has never seen.
pub const V1_UNKNOWN_SAMPLE: &str = "Hello, do you like tea?";
/// Section 2.4's two texts, joined with `<|endoftext|>`.
pub const V2_SAMPLE: &str = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace.";
/// Section 2.5's sample, with a word GPT-2 has never seen.
pub const BPE_SAMPLE: &str = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace.";

/// Section 2.6 starts 50 tokens in and the embedding batch takes 8 x 4 + 1 tokens.
pub const MIN_TOKENS: usize = 60;

/// The text's first words, at most `max_chars` long, cut at whitespace so that every
/// token of the cut is a whole token of the text.
fn opening_words(text: &str, max_chars: usize) -> String {
    let head: String = text.chars().take(max_chars + 1).collect();
    let cut = if head.chars().count() <= max_chars { head.len() } else { head.rfind(char::is_whitespace).unwrap_or(0) };
    head[..cut].to_string()
}

/// Everything the walk-through prints, section by section.
#[derive(Debug, Clone, Serialize)]
pub struct Walkthrough {
    // 2.2 Tokenizing text
    pub characters: usize,
    pub opening: String,
    pub preprocessed_len: usize,
    pub preprocessed_head: Vec<String>,
    // 2.3 Converting tokens into token IDs
    pub vocab_size: usize,
    pub vocab_head: Vec<(String, usize)>,
    /// The book's sample sentence, or (for another text that lacks its words) the opening.
    pub v1_sample: String,
    pub v1_ids: Vec<usize>,
    pub v1_decoded: String,
    /// V1 on a sentence with words outside The Verdict: the error (none for a text that has them).
    pub v1_unknown_error: Option<String>,
    // 2.4 Adding special context tokens
    pub v2_vocab_size: usize,
    pub v2_vocab_tail: Vec<(String, usize)>,
    pub v2_ids: Vec<usize>,
    pub v2_decoded: String,
    // 2.5 Byte pair encoding
    pub bpe_ids: Vec<TokenId>,
    pub bpe_decoded: String,
    // 2.6 Data sampling with a sliding window
    pub bpe_tokens: usize,
    pub context_x: Vec<TokenId>,
    pub context_y: Vec<TokenId>,
    pub next_token_pairs: Vec<NextTokenPair>,
    pub stride1_batches: Vec<BatchRows>,
    pub stride4_batch: BatchRows,
    // 2.7 Creating token embeddings
    pub embedding_weight: Vec<Vec<f32>>,
    pub embedding_of_3: Vec<f32>,
    pub embedding_lookup: Vec<Vec<f32>>,
    // 2.8 Encoding word positions
    pub token_embeddings_shape: Vec<i64>,
    pub pos_embeddings_shape: Vec<i64>,
    pub input_embeddings_shape: Vec<i64>,
}

/// A context and the token that should follow it (section 2.6).
#[derive(Debug, Clone, Serialize)]
pub struct NextTokenPair {
    pub context: Vec<TokenId>,
    pub desired: TokenId,
    pub context_text: String,
    pub desired_text: String,
}

/// One batch as nested lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRows {
    pub inputs: Vec<Vec<i64>>,
    pub targets: Vec<Vec<i64>>,
}

fn loader_rows(text: &str, config: LoaderConfig, batches: usize) -> Result<Vec<BatchRows>> {
    let loader = create_dataloader_v1(text, config)?;
    Ok(loader
        .iter()
        .take(batches)
        .map(|batch| BatchRows { inputs: rows_i64(&batch.inputs), targets: rows_i64(&batch.targets) })
        .collect())
}

/// Runs sections 2.2-2.8 on The Verdict (`context.data`), on the CPU except for the
/// position-encoding step, which uses `context.device`.
pub fn run(context: &RunContext) -> Result<Walkthrough> {
    let raw_text = context.data.read_to_string(&THE_VERDICT)?;

    // 2.2-2.3: split, build the vocabulary, encode and decode with V1.
    let preprocessed = split_text(&raw_text);
    let vocab = Vocabulary::from_text(&raw_text, &[]);
    let v1 = SimpleTokenizerV1::new(vocab.clone());
    let v1_sample = if v1.encode(V1_SAMPLE).is_ok() { V1_SAMPLE.to_string() } else { opening_words(&raw_text, 80) };
    let v1_ids = v1.encode(&v1_sample)?;
    let v1_decoded = v1.decode(&v1_ids)?;
    let v1_unknown_error = v1.encode(V1_UNKNOWN_SAMPLE).err().map(|err| err.to_string());

    // 2.4: V2 with <|unk|> and <|endoftext|>.
    let v2 = SimpleTokenizerV2::from_text(&raw_text);
    let v2_ids = v2.encode(V2_SAMPLE);

    // 2.5: GPT-2's BPE.
    let tokenizer = Gpt2Tokenizer::new();
    let bpe_ids = tokenizer.encode(BPE_SAMPLE);

    // 2.6: next-token pairs on the text after its first 50 tokens, then the loaders.
    let enc_text = tokenizer.encode(&raw_text);
    ensure!(
        enc_text.len() >= MIN_TOKENS,
        "the walk-through needs a text of at least {MIN_TOKENS} GPT-2 tokens; this one has {}",
        enc_text.len()
    );
    let enc_sample = &enc_text[50..];
    let context_size = 4;
    let next_token_pairs = (1..=context_size)
        .map(|i| -> Result<NextTokenPair> {
            let context = enc_sample[..i].to_vec();
            let desired = enc_sample[i];
            Ok(NextTokenPair {
                context_text: tokenizer.decode(&context)?,
                desired_text: tokenizer.decode(&[desired])?,
                context,
                desired,
            })
        })
        .collect::<Result<_>>()?;
    let sequential = LoaderConfig { shuffle: false, ..LoaderConfig::default() };
    let stride1_batches =
        loader_rows(&raw_text, LoaderConfig { batch_size: 1, max_length: 4, stride: 1, ..sequential }, 2)?;
    let stride4_batch =
        loader_rows(&raw_text, LoaderConfig { batch_size: 8, max_length: 4, stride: 4, ..sequential }, 1)?.remove(0);

    // 2.7: a 6 x 3 embedding layer, seeded as in the book.
    context.seed_everything();
    let small = nn::VarStore::new(Device::Cpu);
    let embedding_layer = nn::embedding(small.root(), 6, 3, Default::default());
    let embedding_weight = rows_f32(&embedding_layer.ws);
    let embedding_of_3 = rows_f32(&embedding_layer.forward(&Tensor::from_slice(&[3i64])))[0].clone();
    let embedding_lookup = rows_f32(&embedding_layer.forward(&Tensor::from_slice(&[2i64, 3, 5, 1])));

    // 2.8: token + absolute positional embeddings for a batch of 8 x 4 tokens.
    let (vocab_size, output_dim, max_length) = (tokenizer.vocab_size() as i64, 256, 4);
    let large = nn::VarStore::new(context.device);
    let token_embedding_layer = nn::embedding(large.root() / "tok", vocab_size, output_dim, Default::default());
    let pos_embedding_layer = nn::embedding(large.root() / "pos", max_length, output_dim, Default::default());
    let loader =
        create_dataloader_v1(&raw_text, LoaderConfig { batch_size: 8, max_length: 4, stride: 4, ..sequential })?;
    let batch = loader.iter().next().context("the text is too short for a batch of 8 x 4 tokens")?;
    let token_embeddings = token_embedding_layer.forward(&batch.inputs.to_device(context.device));
    let pos_embeddings = pos_embedding_layer.forward(&Tensor::arange(max_length, (Kind::Int64, context.device)));
    let input_embeddings = &token_embeddings + &pos_embeddings;

    Ok(Walkthrough {
        characters: raw_text.chars().count(),
        opening: raw_text.chars().take(99).collect(),
        preprocessed_len: preprocessed.len(),
        preprocessed_head: preprocessed.iter().take(30).map(|s| s.to_string()).collect(),
        vocab_size: vocab.len(),
        vocab_head: vocab.entries().take(51).map(|(token, id)| (token.to_string(), id)).collect(),
        v1_sample,
        v1_ids,
        v1_decoded,
        v1_unknown_error,
        v2_vocab_size: v2.vocab.len(),
        v2_vocab_tail: v2.vocab.entries().rev().take(5).rev().map(|(token, id)| (token.to_string(), id)).collect(),
        v2_decoded: v2.decode(&v2_ids)?,
        v2_ids,
        bpe_decoded: tokenizer.decode(&bpe_ids)?,
        bpe_ids,
        bpe_tokens: enc_text.len(),
        context_x: enc_sample[..context_size].to_vec(),
        context_y: enc_sample[1..=context_size].to_vec(),
        next_token_pairs,
        stride1_batches,
        stride4_batch,
        embedding_weight,
        embedding_of_3,
        embedding_lookup,
        token_embeddings_shape: token_embeddings.size(),
        pos_embeddings_shape: pos_embeddings.size(),
        input_embeddings_shape: input_embeddings.size(),
    })
}

impl fmt::Display for Walkthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== 2.2 Tokenizing text ==")?;
        writeln!(f, "Total number of characters: {}", self.characters)?;
        writeln!(f, "{}", self.opening)?;
        writeln!(f, "Tokens after splitting: {}", self.preprocessed_len)?;
        writeln!(f, "{:?}", self.preprocessed_head)?;

        writeln!(f, "\n== 2.3 Converting tokens into token IDs ==")?;
        writeln!(f, "Vocabulary size: {}", self.vocab_size)?;
        for (token, id) in &self.vocab_head {
            writeln!(f, "  ({token:?}, {id})")?;
        }
        writeln!(f, "V1 encode {:?}:\n  {:?}", self.v1_sample, self.v1_ids)?;
        writeln!(f, "V1 decode: {:?}", self.v1_decoded)?;
        match &self.v1_unknown_error {
            Some(err) => writeln!(f, "V1 encode {V1_UNKNOWN_SAMPLE:?}: error: {err}")?,
            None => writeln!(f, "V1 encode {V1_UNKNOWN_SAMPLE:?}: every word is in this text's vocabulary")?,
        }

        writeln!(f, "\n== 2.4 Adding special context tokens ==")?;
        writeln!(f, "Vocabulary size with <|endoftext|> and <|unk|>: {}", self.v2_vocab_size)?;
        for (token, id) in &self.v2_vocab_tail {
            writeln!(f, "  ({token:?}, {id})")?;
        }
        writeln!(f, "V2 encode {V2_SAMPLE:?}:\n  {:?}", self.v2_ids)?;
        writeln!(f, "V2 decode: {:?}", self.v2_decoded)?;

        writeln!(f, "\n== 2.5 Byte pair encoding ==")?;
        writeln!(f, "GPT-2 encode {BPE_SAMPLE:?}:\n  {:?}", self.bpe_ids)?;
        writeln!(f, "GPT-2 decode: {:?}", self.bpe_decoded)?;

        writeln!(f, "\n== 2.6 Data sampling with a sliding window ==")?;
        writeln!(f, "Tokens in The Verdict: {}", self.bpe_tokens)?;
        writeln!(f, "x: {:?}", self.context_x)?;
        writeln!(f, "y:      {:?}", self.context_y)?;
        for pair in &self.next_token_pairs {
            writeln!(f, "{:?} ----> {}", pair.context, pair.desired)?;
        }
        for pair in &self.next_token_pairs {
            writeln!(f, "{} ----> {}", pair.context_text, pair.desired_text)?;
        }
        writeln!(f, "Loader batch_size=1, max_length=4, stride=1:")?;
        for batch in &self.stride1_batches {
            writeln!(f, "  inputs {:?}, targets {:?}", batch.inputs, batch.targets)?;
        }
        writeln!(f, "Loader batch_size=8, max_length=4, stride=4:")?;
        writeln!(f, "  Inputs:  {:?}", self.stride4_batch.inputs)?;
        writeln!(f, "  Targets: {:?}", self.stride4_batch.targets)?;

        writeln!(f, "\n== 2.7 Creating token embeddings ==")?;
        writeln!(f, "Embedding(6, 3) weight after manual_seed(123):")?;
        writeln!(f, "{}", format_rows(&self.embedding_weight))?;
        writeln!(f, "Embedding of token id 3:")?;
        writeln!(f, "{}", format_rows(std::slice::from_ref(&self.embedding_of_3)))?;
        writeln!(f, "Embeddings of token ids [2, 3, 5, 1]:")?;
        writeln!(f, "{}", format_rows(&self.embedding_lookup))?;

        writeln!(f, "\n== 2.8 Encoding word positions ==")?;
        writeln!(f, "Token embeddings shape:      {:?}", self.token_embeddings_shape)?;
        writeln!(f, "Positional embeddings shape: {:?}", self.pos_embeddings_shape)?;
        write!(f, "Input embeddings shape:      {:?}", self.input_embeddings_shape)
    }
}

//! Section 7.2's prompt styles: the Alpaca template the chapter trains with, and the
//! Phi-3 template of exercise 7.1; beyond the book, an instruction model's own chat
//! template ([`ChatStyle`]: Llama 3's, Qwen3's, Gemma 3's). A template turns a record into
//! the prompt the model sees (the book's `format_input`), appends the expected response for
//! training, finds the response in a generated text (section 7.7), and renders a chat for
//! the server.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use shared::tokenizer::{ChatMessage, ChatTemplate, TokenId, Tokenizer};

use crate::records::InstructionRecord;

/// One prompt style.
pub trait PromptTemplate: Send + Sync {
    /// The prompt: instruction and, when there is one, input (`format_input`).
    fn format_input(&self, record: &InstructionRecord) -> String;

    /// The text that follows the prompt in a training example: the response marker, then
    /// `output`.
    fn format_response(&self, output: &str) -> String;

    /// The marker that opens the response, removed from generated responses.
    fn response_marker(&self) -> Option<&'static str>;

    /// Whether prompts hold the tokenizer's special tokens (a chat template writes its BOS
    /// and turn markers), so that they are encoded as they are, with nothing added.
    fn writes_special_tokens(&self) -> bool {
        false
    }

    /// The ids of a prompt or example this template wrote: the book's `tokenizer.encode`,
    /// or, for a template that writes special tokens, the text as it is.
    fn encode(&self, tokenizer: &dyn Tokenizer, text: &str) -> Result<Vec<TokenId>> {
        if self.writes_special_tokens() {
            tokenizer.encode_fragment(text)
        } else {
            tokenizer.encode(text)
        }
    }

    /// [`PromptTemplate::encode`] as the model's input ids.
    fn encode_ids(&self, tokenizer: &dyn Tokenizer, text: &str) -> Result<Vec<i64>> {
        Ok(self.encode(tokenizer, text)?.into_iter().map(i64::from).collect())
    }

    /// A whole training example: prompt, marker and expected output.
    fn format_example(&self, record: &InstructionRecord) -> String {
        self.format_input(record) + &self.format_response(&record.output)
    }

    /// The model's response in `generated` (the decoded prompt plus continuation): the text
    /// after the prompt, without the response marker, trimmed, as the book extracts it.
    fn extract_response(&self, generated: &str, prompt: &str) -> String {
        // The book slices `generated_text[len(input_text):]`, a count of characters.
        let continuation = generated.strip_prefix(prompt).unwrap_or_else(|| {
            generated.char_indices().nth(prompt.chars().count()).map_or("", |(i, _)| &generated[i..])
        });
        match self.response_marker() {
            Some(marker) => continuation.replace(marker, ""),
            None => continuation.to_string(),
        }
        .trim()
        .to_string()
    }

    /// The prompt for a conversation (system, user and assistant turns; the last the
    /// user's). The book's styles know one instruction and one input per prompt: the last
    /// user message is the instruction and the system messages are its input (the context
    /// it works on); earlier turns come first, each a complete example (instruction and
    /// response) as in training. A single user message gives the prompt `respond` builds.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        let mut system = Vec::new();
        let mut turns: Vec<(&str, String)> = Vec::new();
        for message in messages {
            let role = message.role.as_str();
            if role == "system" {
                system.push(message.content.as_str());
                continue;
            }
            // Consecutive messages of one role are one turn.
            match turns.last_mut() {
                Some((last, joined)) if *last == role => *joined = format!("{joined}\n{}", message.content),
                _ => turns.push((role, message.content.clone())),
            }
        }
        let Some(("user", instruction)) = turns.last() else {
            bail!("the last message (after any system message) must be the user's");
        };
        ensure!(turns[0].0 == "user", "the conversation must start with a user message");
        let mut prompt = String::new();
        for pair in turns[..turns.len() - 1].chunks(2) {
            let record = InstructionRecord::new(&pair[0].1, "", &pair[1].1);
            prompt += &(self.format_example(&record) + "\n\n");
        }
        Ok(prompt + &self.format_input(&InstructionRecord::new(instruction, &system.join("\n"), "")))
    }
}

/// The Alpaca style of section 7.2:
///
/// ```text
/// Below is an instruction that describes a task. Write a response that appropriately completes the request.
///
/// ### Instruction:
/// {instruction}
///
/// ### Input:
/// {input}
///
/// ### Response:
/// {output}
/// ```
///
/// The input section is left out when the input is empty.
pub struct Alpaca;

impl PromptTemplate for Alpaca {
    fn format_input(&self, record: &InstructionRecord) -> String {
        let mut prompt = format!(
            "Below is an instruction that describes a task. Write a response that appropriately completes the \
             request.\n\n### Instruction:\n{}",
            record.instruction
        );
        if !record.input.is_empty() {
            prompt += &format!("\n\n### Input:\n{}", record.input);
        }
        prompt
    }

    fn format_response(&self, output: &str) -> String {
        format!("\n\n### Response:\n{output}")
    }

    fn response_marker(&self) -> Option<&'static str> {
        Some("### Response:")
    }
}

/// Microsoft Phi-3's chat style (exercise 7.1): `<|user|>`, the instruction, the input on
/// the next line when there is one, then `<|assistant|>:` and the response. Its prompts are
/// shorter than Alpaca's, which makes fine-tuning cheaper.
pub struct Phi3;

impl PromptTemplate for Phi3 {
    fn format_input(&self, record: &InstructionRecord) -> String {
        let mut prompt = format!("<|user|>\n{}", record.instruction);
        if !record.input.is_empty() {
            prompt += &format!("\n{}", record.input);
        }
        prompt
    }

    fn format_response(&self, output: &str) -> String {
        format!("\n<|assistant|>:\n{output}")
    }

    fn response_marker(&self) -> Option<&'static str> {
        Some("<|assistant|>:")
    }
}

/// An instruction model's own chat template (Llama 3's, Qwen3's, Gemma 3's), as the model
/// was tuned to read it: a record is one user message (the instruction, then the input
/// after a blank line when there is one), the prompt ends where the assistant's reply
/// begins, and a training example is the whole two-turn conversation, closed by the
/// template's end-of-turn token.
pub struct ChatStyle {
    template: ChatTemplate,
}

impl ChatStyle {
    /// The style of `template`, rendered once on a sample record so that a template that
    /// cannot render one user message and one reply is an error here, not later.
    pub fn new(template: ChatTemplate) -> Result<Self> {
        let style = Self { template };
        let sample = InstructionRecord::new("Name a planet.", "", "Mars.");
        style.render(&sample, true).context("the chat template cannot render a user message")?;
        style.render(&sample, false).context("the chat template cannot render a user message and a reply")?;
        Ok(style)
    }

    fn render(&self, record: &InstructionRecord, add_generation_prompt: bool) -> Result<String> {
        let mut message = record.instruction.clone();
        if !record.input.is_empty() {
            message += &format!("\n\n{}", record.input);
        }
        let mut messages = vec![ChatMessage::new("user", &message)];
        if !add_generation_prompt {
            messages.push(ChatMessage::new("assistant", &record.output));
        }
        self.template.render(&messages, add_generation_prompt)
    }

    fn rendered(&self, record: &InstructionRecord, add_generation_prompt: bool) -> String {
        // The template rendered the same structure in `new`, and reads no content.
        self.render(record, add_generation_prompt).expect("the chat template rendered this structure when loaded")
    }
}

impl PromptTemplate for ChatStyle {
    fn format_input(&self, record: &InstructionRecord) -> String {
        self.rendered(record, true)
    }

    /// The reply as the whole conversation renders it after the prompt (the output and the
    /// end-of-turn token; for a template whose prompt is no prefix of the conversation,
    /// what follows their common beginning).
    fn format_response(&self, output: &str) -> String {
        let record = InstructionRecord::new("", "", output);
        let (prompt, whole) = (self.rendered(&record, true), self.rendered(&record, false));
        let common = prompt.chars().zip(whole.chars()).take_while(|(a, b)| a == b).count();
        whole.chars().skip(common).collect()
    }

    fn format_example(&self, record: &InstructionRecord) -> String {
        self.rendered(record, false)
    }

    fn response_marker(&self) -> Option<&'static str> {
        None
    }

    fn writes_special_tokens(&self) -> bool {
        true
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        self.template.render(messages, true)
    }
}

/// The templates by name, for flags and checkpoint descriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateKind {
    #[default]
    Alpaca,
    Phi3,
    // The model's own chat template (a Hugging Face instruction model's). A plain comment:
    // a doc comment would turn clap's help for the whole command into its long form.
    Model,
}

impl TemplateKind {
    /// The template for a model with `tokenizer`; `Model` needs a tokenizer with a chat
    /// template.
    pub fn template(self, tokenizer: &dyn Tokenizer) -> Result<Box<dyn PromptTemplate>> {
        Ok(match self {
            Self::Alpaca => Box::new(Alpaca),
            Self::Phi3 => Box::new(Phi3),
            Self::Model => {
                let Some(template) = tokenizer.chat_template()? else {
                    bail!(
                        "--template model: the model's {} tokenizer has no chat template (a Hugging Face \
                         instruction model's folder has one); use alpaca or phi3",
                        tokenizer.spec().name()
                    );
                };
                Box::new(ChatStyle::new(template)?)
            }
        })
    }

    /// The style a model is prompted in when nothing says otherwise: its own chat template
    /// when its tokenizer has one, else the book's Alpaca.
    pub fn default_for(tokenizer: &dyn Tokenizer) -> Result<Self> {
        Ok(if tokenizer.chat_template()?.is_some() { Self::Model } else { Self::Alpaca })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Alpaca => "Alpaca",
            Self::Phi3 => "Phi-3",
            Self::Model => "the model's chat",
        }
    }
}

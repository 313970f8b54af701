//! Section 7.2's prompt styles: the Alpaca template the chapter trains with, and the
//! Phi-3 template of exercise 7.1. A template turns a record into the prompt the model sees
//! (the book's `format_input`), appends the expected response for training, and finds the
//! response in a generated text (section 7.7).

use serde::{Deserialize, Serialize};

use crate::records::InstructionRecord;

/// One prompt style.
pub trait PromptTemplate: Sync {
    /// The prompt: instruction and, when there is one, input (`format_input`).
    fn format_input(&self, record: &InstructionRecord) -> String;

    /// The text that follows the prompt in a training example: the response marker, then
    /// `output`.
    fn format_response(&self, output: &str) -> String;

    /// The marker that opens the response, removed from generated responses.
    fn response_marker(&self) -> &'static str;

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
        continuation.replace(self.response_marker(), "").trim().to_string()
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

    fn response_marker(&self) -> &'static str {
        "### Response:"
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

    fn response_marker(&self) -> &'static str {
        "<|assistant|>:"
    }
}

/// The templates by name, for flags and checkpoint descriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateKind {
    #[default]
    Alpaca,
    Phi3,
}

impl TemplateKind {
    pub fn template(self) -> &'static dyn PromptTemplate {
        match self {
            Self::Alpaca => &Alpaca,
            Self::Phi3 => &Phi3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Alpaca => "Alpaca",
            Self::Phi3 => "Phi-3",
        }
    }
}

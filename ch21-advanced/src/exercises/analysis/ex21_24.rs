//! Exercise 21.24: the cross-entropy of each token of a passage (held-out Shakespeare, or
//! `--data FILE`) under a pretrained model: the 10 most surprising and the 10 most predictable
//! tokens with the text before them, the mean loss by position in the sentence, and by kind
//! of token: the first piece of a function word (a stop-word list, with Shakespeare's
//! thou/thee/hath...), of a content word, a later piece of a word, punctuation, line breaks.
//! A chart shows the loss of every token.

use std::fmt;
use std::path::PathBuf;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::app::plot::{Chart, Series, PALETTE};

use crate::analysis::{data_file, held_out_text, token_labels};
use crate::models::Model;
use crate::pretrained::{subject, Pretraining};
use crate::quality::token_log_probs;

pub const EXERCISE: Exercise = Exercise {
    id: "21.24",
    summary: "per-token cross-entropy of a held-out passage: the 10 highest- and lowest-loss tokens in context, mean loss by position in the sentence and for function vs content words, a per-token loss chart",
    run: |context| Report::new(&run(context, &subject(context, &context.flags, &Pretraining::standard())?, 400)?),
};

/// Function words: English stop words and Shakespeare's forms of them.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    // Early modern English.
    "thou",
    "thee",
    "thy",
    "thine",
    "ye",
    "art",
    "hath",
    "doth",
    "dost",
    "hast",
    "shalt",
    "wilt",
    "wouldst",
    "canst",
    "'tis",
    "tis",
    "o",
    "nay",
    "yea",
    "ere",
    "whence",
    "thence",
    "hither",
    "thither",
];

/// Kinds of token for the loss table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    FunctionWord,
    ContentWord,
    LaterPiece,
    Punctuation,
    LineBreak,
}

impl TokenKind {
    pub const ALL: [Self; 5] =
        [Self::FunctionWord, Self::ContentWord, Self::LaterPiece, Self::Punctuation, Self::LineBreak];

    fn describe(self) -> &'static str {
        match self {
            Self::FunctionWord => "function word (first piece)",
            Self::ContentWord => "content word (first piece)",
            Self::LaterPiece => "later piece of a word",
            Self::Punctuation => "punctuation",
            Self::LineBreak => "line break or space",
        }
    }
}

/// One scored token.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredToken {
    pub index: usize,
    pub token: String,
    /// The text of the few tokens before it.
    pub before: String,
    pub loss: f64,
    pub kind: TokenKind,
    /// Tokens since the sentence began (0: its first), spaces and line breaks not counted
    /// (`None` for them).
    pub sentence_position: Option<usize>,
}

/// A mean loss over a group of tokens.
#[derive(Debug, Clone, Serialize)]
pub struct GroupLoss {
    pub group: String,
    pub tokens: usize,
    pub mean_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_24 {
    pub model: String,
    pub source: String,
    pub mean_loss: f64,
    pub tokens: Vec<ScoredToken>,
    pub highest: Vec<ScoredToken>,
    pub lowest: Vec<ScoredToken>,
    pub by_position: Vec<GroupLoss>,
    pub by_kind: Vec<GroupLoss>,
    pub figure: PathBuf,
}

/// Sentence positions grouped for the table: 0, 1, 2, 3, 4-7, 8-15, 16 and on (spaces and line
/// breaks left out).
const POSITION_GROUPS: [(usize, usize); 7] = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 7), (8, 15), (16, usize::MAX)];

/// The kind of each token (its text as decoded): words are told apart by whether a piece
/// starts one (a leading space, or after a line break, punctuation or the start) and by the
/// whole word's membership of [`STOP_WORDS`].
pub fn token_kinds(tokens: &[String]) -> Vec<TokenKind> {
    let is_word = |t: &str| t.trim_start().chars().next().is_some_and(|c| c.is_alphanumeric() || c == '\'');
    (0..tokens.len())
        .map(|i| {
            let token = &tokens[i];
            if token.trim().is_empty() {
                return TokenKind::LineBreak;
            }
            if !is_word(token) {
                return TokenKind::Punctuation;
            }
            let starts_word = i == 0
                || token.starts_with(' ')
                || !is_word(&tokens[i - 1])
                || tokens[i - 1].ends_with(char::is_whitespace);
            if !starts_word {
                return TokenKind::LaterPiece;
            }
            let word: String = std::iter::once(token.trim_start())
                .chain(tokens[i + 1..].iter().take_while(|t| is_word(t) && !t.starts_with(' ')).map(String::as_str))
                .collect::<String>()
                .to_lowercase();
            if STOP_WORDS.contains(&word.as_str()) {
                TokenKind::FunctionWord
            } else {
                TokenKind::ContentWord
            }
        })
        .collect()
}

/// Each token's position in its sentence, counting restarting after `.`, `!` or `?`; tokens of
/// only spaces and line breaks (`None`) are not counted.
pub fn sentence_positions(tokens: &[String]) -> Vec<Option<usize>> {
    let mut position = 0;
    tokens
        .iter()
        .map(|token| {
            if token.trim().is_empty() {
                return None;
            }
            let here = position;
            let ends = token.trim_end().ends_with(['.', '!', '?']);
            position = if ends { 0 } else { position + 1 };
            Some(here)
        })
        .collect()
}

fn mean_of<'a>(group: String, tokens: impl Iterator<Item = &'a ScoredToken>) -> GroupLoss {
    let losses: Vec<f64> = tokens.map(|t| t.loss).collect();
    let mean_loss = if losses.is_empty() { f64::NAN } else { losses.iter().sum::<f64>() / losses.len() as f64 };
    GroupLoss { group, tokens: losses.len(), mean_loss }
}

/// The passage: `--data FILE`, or held-out Shakespeare from its first full line.
fn passage(context: &RunContext) -> Result<(String, String)> {
    if let Some(file) = data_file(context)? {
        return Ok(file);
    }
    let text = held_out_text(context)?;
    let start = text.find("\n\n").map_or(0, |i| i + 2);
    Ok(("held-out tiny Shakespeare (its last 5 %)".to_string(), text[start..].to_string()))
}

/// Scores the first `max_tokens` tokens of the passage (at most a context).
pub fn run(context: &RunContext, model: &Model, max_tokens: usize) -> Result<Ex21_24> {
    let gpt = model.gpt();
    let tokenizer = gpt.cfg.tokenizer.build()?;
    let (source, text) = passage(context)?;
    let mut ids = tokenizer.encode(&text)?;
    ids.truncate(max_tokens.min(gpt.cfg.context_length as usize));
    ensure!(ids.len() >= 2, "the passage needs at least two tokens");
    let texts: Vec<String> = ids.iter().map(|&id| tokenizer.decode(&[id]).unwrap_or_else(|_| "?".into())).collect();
    let labels = token_labels(tokenizer.as_ref(), &ids);
    let kinds = token_kinds(&texts);
    let positions = sentence_positions(&texts);
    let losses: Vec<f64> = token_log_probs(gpt, &ids)?.into_iter().map(|lp| -lp).collect();
    // Token 0 has no prediction: the scored tokens are 1.. .
    let tokens: Vec<ScoredToken> = (1..ids.len())
        .map(|i| ScoredToken {
            index: i,
            token: labels[i].clone(),
            before: texts[i.saturating_sub(6)..i].concat().replace('\n', "\\n"),
            loss: losses[i - 1],
            kind: kinds[i],
            sentence_position: positions[i],
        })
        .collect();
    let mut ranked = tokens.clone();
    ranked.sort_by(|a, b| b.loss.total_cmp(&a.loss));
    let highest = ranked.iter().take(10).cloned().collect();
    let lowest = ranked.iter().rev().take(10).cloned().collect();
    let by_position = POSITION_GROUPS
        .iter()
        .map(|&(lo, hi)| {
            let name = match (lo, hi) {
                (lo, hi) if lo == hi => lo.to_string(),
                (lo, usize::MAX) => format!("{lo}+"),
                (lo, hi) => format!("{lo}-{hi}"),
            };
            mean_of(name, tokens.iter().filter(|t| t.sentence_position.is_some_and(|p| (lo..=hi).contains(&p))))
        })
        .collect();
    let by_kind = TokenKind::ALL
        .iter()
        .map(|&kind| mean_of(kind.describe().to_string(), tokens.iter().filter(|t| t.kind == kind)))
        .collect();

    let xs: Vec<f64> = tokens.iter().map(|t| t.index as f64).collect();
    let ys: Vec<f64> = tokens.iter().map(|t| t.loss).collect();
    let smooth: Vec<f64> = (0..ys.len())
        .map(|i| {
            let window = &ys[i.saturating_sub(9)..=i];
            window.iter().sum::<f64>() / window.len() as f64
        })
        .collect();
    let figure = context.out_dir.join("ex21_24-per-token-loss.png");
    Chart {
        series: vec![
            Series { xs: &xs, ys: &ys, color: PALETTE[0], label: "loss of the token" },
            Series { xs: &xs, ys: &smooth, color: PALETTE[1], label: "mean of the last 10" },
        ],
        x_label: "token of the passage",
        y_label: "cross-entropy (nats)",
        top_axis: None,
        width: 1100,
        height: 480,
    }
    .write_png(&figure)?;
    Ok(Ex21_24 {
        model: model.name.clone(),
        source,
        mean_loss: ys.iter().sum::<f64>() / ys.len() as f64,
        tokens,
        highest,
        lowest,
        by_position,
        by_kind,
        figure,
    })
}

impl fmt::Display for Ex21_24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}", self.model)?;
        writeln!(
            f,
            "Passage: {}, {} tokens scored, mean loss {:.2} (perplexity {:.1})",
            self.source,
            self.tokens.len(),
            self.mean_loss,
            self.mean_loss.exp()
        )?;
        for (title, list) in
            [("Highest loss (most surprising)", &self.highest), ("Lowest loss (most predictable)", &self.lowest)]
        {
            writeln!(f, "\n{title}:\n| loss | text before | token | kind |\n|---:|---|---|---|")?;
            for t in list {
                writeln!(f, "| {:.2} | {} | **{}** | {} |", t.loss, t.before.trim_start(), t.token, t.kind.describe())?;
            }
        }
        for (title, groups) in [("Position in the sentence", &self.by_position), ("Kind of token", &self.by_kind)] {
            writeln!(f, "\n| {title} | tokens | mean loss |\n|---|---:|---:|")?;
            for g in groups {
                let mean = if g.tokens == 0 { "–".to_string() } else { format!("{:.2}", g.mean_loss) };
                writeln!(f, "| {} | {} | {mean} |", g.group, g.tokens)?;
            }
        }
        write!(f, "\nPer-token loss: {}", self.figure.display())
    }
}

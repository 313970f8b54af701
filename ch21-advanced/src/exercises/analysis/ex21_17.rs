//! Exercise 21.17: the attention patterns of a pretrained model. For five sentences, a PNG
//! grid of the attention weights of 4 layers x 4 heads (spread over the model's layers and
//! heads) with the tokens on the axes. Every head is then scored on the sentences: its
//! attention to the previous token, to the first token and to punctuation; and, on repeated
//! random token sequences (`<|endoftext|>` then `r r`, where `r` is random tokens of the
//! held-out text), its induction score: the attention from the second occurrence of a token to
//! the token that followed its first occurrence, which is how an induction head copies. The
//! model's loss on the repeated half against the first half shows whether it uses them.

use std::fmt;
use std::path::PathBuf;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;
use shared::core::device::seed_everything;

use crate::exercises::Exercise;
use shared::app::plot::{write_grid, Figure, Heatmap};
use shared::core::tensors::rows_f64;
use shared::model::GptModel;
use shared::tokenizer::TokenId;
use tch::{Kind, Tensor};

use crate::analysis::{held_out_text, token_labels};
use crate::models::Model;
use crate::pretrained::{subject, Pretraining};

pub const EXERCISE: Exercise = Exercise {
    id: "21.17",
    summary: "attention patterns of the pretrained model on 5 sentences (4 layers x 4 heads each, PNG grids); heads scored for previous-token, first-token and punctuation attention, and induction heads found on repeated random tokens",
    run: |context| Report::new(&run(context, &subject(context, &context.flags, &Pretraining::standard())?)?),
};

/// The five sentences: punctuation, names that come back, and Shakespeare's register (the
/// corpus of the project's own model).
pub const SENTENCES: [&str; 5] = [
    "ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is the sun.",
    "The king is dead; long live the king! The queen, however, said nothing at all.",
    "First Citizen: We are accounted poor citizens, the patricians good. What authority surfeits on would relieve us.",
    "When Mr. Smith met Mrs. Brown in London, Mr. Smith smiled, and Mrs. Brown laughed.",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.",
];

/// Layers and heads shown per sentence (all of them when the model has fewer).
pub const SHOWN: usize = 4;
/// Random sequences of the induction test, and the longest repeated part.
pub const INDUCTION_SEQUENCES: i64 = 8;
pub const INDUCTION_LENGTH: usize = 40;
/// Heads listed per kind.
const TOP: usize = 3;

/// What a head is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    PreviousToken,
    FirstToken,
    Punctuation,
    Induction,
}

impl HeadKind {
    pub const ALL: [Self; 4] = [Self::PreviousToken, Self::FirstToken, Self::Punctuation, Self::Induction];

    fn describe(self) -> &'static str {
        match self {
            Self::PreviousToken => "previous token",
            Self::FirstToken => "first token",
            Self::Punctuation => "punctuation",
            Self::Induction => "induction",
        }
    }
}

/// One kind's score of every head, `scores[layer][head]`, with the score that attention
/// spread evenly over the visible tokens would get, and the best heads.
#[derive(Debug, Clone, Serialize)]
pub struct HeadScores {
    pub kind: HeadKind,
    pub scores: Vec<Vec<f64>>,
    pub uniform: f64,
    /// `(layer, head, score)`, best first.
    pub top: Vec<(usize, usize, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sentence {
    pub text: String,
    pub tokens: Vec<String>,
    pub figure: PathBuf,
}

/// The repeated random sequences: the model's loss on the first and the second copy.
#[derive(Debug, Clone, Serialize)]
pub struct Repetition {
    pub sequences: i64,
    pub length: usize,
    pub first_copy_loss: f64,
    pub second_copy_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_17 {
    pub model: String,
    pub layers_shown: Vec<usize>,
    pub heads_shown: Vec<usize>,
    pub sentences: Vec<Sentence>,
    pub scores: Vec<HeadScores>,
    pub repetition: Repetition,
    pub scores_figure: PathBuf,
}

/// An attention matrix: `rows[query][key]`, causal (zero above the diagonal).
pub type Attention = Vec<Vec<f64>>;

/// Mean attention from each query after the first to the token just before it.
pub fn previous_token_score(attention: &Attention) -> f64 {
    mean((1..attention.len()).map(|t| attention[t][t - 1]))
}

/// Mean attention from each query after the first to the first token.
pub fn first_token_score(attention: &Attention) -> f64 {
    mean((1..attention.len()).map(|t| attention[t][0]))
}

/// Mean attention mass on punctuation tokens, over the queries that see one; the first token
/// is left out (heads park attention there whatever it is).
pub fn punctuation_score(attention: &Attention, punctuation: &[bool]) -> f64 {
    let masses = (1..attention.len())
        .filter(|&t| punctuation[1..=t].contains(&true))
        .map(|t| (1..=t).filter(|&k| punctuation[k]).map(|k| attention[t][k]).sum::<f64>());
    mean(masses)
}

/// On `prefix` tokens followed by a sequence of `length` tokens and its repeat: the mean
/// attention from each token of the repeat to the token after its first occurrence.
pub fn induction_score(attention: &Attention, prefix: usize, length: usize) -> f64 {
    mean((0..length).map(|j| attention[prefix + length + j][prefix + j + 1]))
}

/// Attention spread evenly over the visible tokens, `tokens` long.
pub fn uniform_attention(tokens: usize) -> Attention {
    (0..tokens).map(|t| (0..tokens).map(|k| if k <= t { 1.0 / (t + 1) as f64 } else { 0.0 }).collect()).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(sum, n), v| (sum + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// `count` indices spread evenly over `0..n` (all of them when `n <= count`).
pub fn spread(n: usize, count: usize) -> Vec<usize> {
    if n <= count {
        return (0..n).collect();
    }
    (0..count).map(|i| (i * (n - 1) + (count - 1) / 2) / (count - 1)).collect()
}

/// A batch of equally long rows of token ids, on the model's device.
fn batch(model: &GptModel, ids: &[Vec<TokenId>]) -> Tensor {
    let flat: Vec<i64> = ids.iter().flatten().map(|&id| i64::from(id)).collect();
    Tensor::from_slice(&flat).view([ids.len() as i64, -1]).to_device(model.tok_emb.ws.device())
}

/// Every layer's attention `[layer][batch row][head]` of `ids` (a batch of equally long rows).
fn attention_of(model: &GptModel, ids: &[Vec<TokenId>]) -> Result<Vec<Vec<Vec<Attention>>>> {
    let layers = model.attention_weights(&batch(model, ids))?;
    Ok(layers
        .iter()
        .map(|layer| {
            let (rows, heads) = (layer.size()[0], layer.size()[1]);
            (0..rows).map(|b| (0..heads).map(|h| rows_f64(&layer.get(b).get(h))).collect()).collect()
        })
        .collect())
}

fn best(kind: HeadKind, scores: Vec<Vec<f64>>, uniform: f64) -> HeadScores {
    let mut all: Vec<(usize, usize, f64)> = scores
        .iter()
        .enumerate()
        .flat_map(|(layer, heads)| heads.iter().enumerate().map(move |(head, &s)| (layer, head, s)))
        .collect();
    all.sort_by(|a, b| b.2.total_cmp(&a.2));
    all.truncate(TOP);
    HeadScores { kind, scores, uniform, top: all }
}

/// Draws, scores and tests `model`'s attention heads; figures go to the output folder.
pub fn run(context: &RunContext, model: &Model) -> Result<Ex21_17> {
    let gpt = model.gpt();
    let cfg = &gpt.cfg;
    let tokenizer = cfg.tokenizer.build()?;
    let (layers, heads) = (cfg.n_layers as usize, cfg.n_heads as usize);
    let layers_shown = spread(layers, SHOWN);
    let heads_shown = spread(heads, SHOWN);
    context.create_out_dir()?;

    let mut sentences = Vec::new();
    let (mut previous, mut first, mut punctuation) =
        (vec![vec![0.0; heads]; layers], vec![vec![0.0; heads]; layers], vec![vec![0.0; heads]; layers]);
    let mut uniform = [0.0; 3];
    for (i, text) in SENTENCES.iter().enumerate() {
        let mut ids = tokenizer.encode(text)?;
        ids.truncate(cfg.context_length as usize);
        let tokens = token_labels(tokenizer.as_ref(), &ids);
        let is_punctuation: Vec<bool> =
            tokens.iter().map(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_punctuation())).collect();
        let attention = attention_of(gpt, &[ids])?;
        let n = SENTENCES.len() as f64;
        for l in 0..layers {
            for h in 0..heads {
                let a = &attention[l][0][h];
                previous[l][h] += previous_token_score(a) / n;
                first[l][h] += first_token_score(a) / n;
                punctuation[l][h] += punctuation_score(a, &is_punctuation) / n;
            }
        }
        let even = uniform_attention(tokens.len());
        uniform[0] += previous_token_score(&even) / n;
        uniform[1] += first_token_score(&even) / n;
        uniform[2] += punctuation_score(&even, &is_punctuation) / n;

        let maps: Vec<(String, Heatmap)> = layers_shown
            .iter()
            .flat_map(|&l| heads_shown.iter().map(move |&h| (l, h)))
            .map(|(l, h)| {
                let map = Heatmap {
                    values: &attention[l][0][h],
                    x_label: "key",
                    y_label: "query",
                    annotate: false,
                    tick_labels: Some(&tokens),
                };
                (format!("layer {l}, head {h}"), map)
            })
            .collect();
        let panels: Vec<(&str, &dyn Figure)> = maps.iter().map(|(title, map)| (title.as_str(), map as _)).collect();
        let figure = context.out_dir.join(format!("ex21_17-sentence-{}.png", i + 1));
        write_grid(&figure, &panels, heads_shown.len(), (420, 420))?;
        sentences.push(Sentence { text: text.to_string(), tokens, figure });
    }

    let (repetition, induction) = induction(context, gpt)?;
    let scores = vec![
        best(HeadKind::PreviousToken, previous, uniform[0]),
        best(HeadKind::FirstToken, first, uniform[1]),
        best(HeadKind::Punctuation, punctuation, uniform[2]),
        induction,
    ];
    let maps: Vec<Heatmap> = scores
        .iter()
        .map(|s| Heatmap { values: &s.scores, x_label: "head", y_label: "layer", annotate: true, tick_labels: None })
        .collect();
    let panels: Vec<(&str, &dyn Figure)> =
        scores.iter().zip(&maps).map(|(s, map)| (s.kind.describe(), map as &dyn Figure)).collect();
    let scores_figure = context.out_dir.join("ex21_17-head-scores.png");
    write_grid(&scores_figure, &panels, 2, (560, 480))?;
    Ok(Ex21_17 { model: model.name.clone(), layers_shown, heads_shown, sentences, scores, repetition, scores_figure })
}

/// The induction test on repeated random tokens of the held-out text.
fn induction(context: &RunContext, gpt: &GptModel) -> Result<(Repetition, HeadScores)> {
    let tokenizer = gpt.cfg.tokenizer.build()?;
    let prefix: Vec<TokenId> = tokenizer.end_of_text().into_iter().collect();
    let length = INDUCTION_LENGTH.min((gpt.cfg.context_length as usize - prefix.len()) / 2);
    ensure!(length >= 2, "the model's context is too short for the induction test");
    let mut pool = tokenizer.encode(&held_out_text(context)?)?;
    pool.sort_unstable();
    pool.dedup();
    seed_everything(context.seed);
    let picks = Vec::<i64>::try_from(Tensor::randint(
        pool.len() as i64,
        [INDUCTION_SEQUENCES * length as i64],
        (Kind::Int64, tch::Device::Cpu),
    ))?;
    let rows: Vec<Vec<TokenId>> = picks
        .chunks(length)
        .map(|random| {
            let random: Vec<TokenId> = random.iter().map(|&i| pool[i as usize]).collect();
            prefix.iter().chain(&random).chain(&random).copied().collect()
        })
        .collect();
    let attention = attention_of(gpt, &rows)?;
    let scores = attention
        .iter()
        .map(|layer| {
            (0..gpt.cfg.n_heads as usize)
                .map(|h| mean(layer.iter().map(|row| induction_score(&row[h], prefix.len(), length))))
                .collect()
        })
        .collect();
    let uniform = induction_score(&uniform_attention(prefix.len() + 2 * length), prefix.len(), length);

    // Losses of the tokens after each copy's first (the first of the repeat cannot be known).
    let _no_grad = tch::no_grad_guard();
    let idx = batch(gpt, &rows);
    let log_probs = gpt.forward_t(&idx, false).log_softmax(-1, Kind::Float);
    let copy_loss = |start: usize| -> Result<f64> {
        // Tokens start + 1 .. start + length - 1, each predicted at the position before it.
        let n = length as i64 - 1;
        let predicted = log_probs.narrow(1, start as i64, n);
        let targets = idx.narrow(1, start as i64 + 1, n).unsqueeze(-1);
        Ok(-predicted.gather(-1, &targets, false).mean(Kind::Double).double_value(&[]))
    };
    let p = prefix.len();
    let repetition = Repetition {
        sequences: INDUCTION_SEQUENCES,
        length,
        first_copy_loss: copy_loss(p)?,
        second_copy_loss: copy_loss(p + length)?,
    };
    Ok((repetition, best(HeadKind::Induction, scores, uniform)))
}

impl fmt::Display for Ex21_17 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}", self.model)?;
        writeln!(
            f,
            "Attention of layers {:?} x heads {:?} (counted from 0) for each sentence:",
            self.layers_shown, self.heads_shown
        )?;
        for s in &self.sentences {
            writeln!(f, "  {} ({} tokens): {}", s.figure.display(), s.tokens.len(), s.text)?;
        }
        writeln!(f, "\n| head kind | score of even attention | top heads (layer.head: score) |")?;
        writeln!(f, "|---|---:|---|")?;
        for s in &self.scores {
            let top: Vec<String> = s.top.iter().map(|(l, h, v)| format!("{l}.{h}: {v:.2}")).collect();
            writeln!(f, "| {} | {:.2} | {} |", s.kind.describe(), s.uniform, top.join(", "))?;
        }
        let r = &self.repetition;
        writeln!(
            f,
            "\nRepeated random tokens ({} sequences of {} tokens, twice): loss {:.2} on the first copy, {:.2} on the repeat",
            r.sequences, r.length, r.first_copy_loss, r.second_copy_loss
        )?;
        write!(f, "Every head's scores: {}", self.scores_figure.display())
    }
}

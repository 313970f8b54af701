//! Exercise 21.10: autoregressive (decoder-only) vs bidirectional (encoder-only) models. The
//! demonstration measures, on one small random model per mask, which positions' outputs
//! change when one input token changes: causal (GPT), bidirectional (BERT-like, a prefix as
//! long as the input) and a prefix LM (bidirectional over the first 3 tokens, causal after).

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;
use shared::model::attention::AttentionMask;

use crate::exercises::Exercise;
use shared::model::{GptConfig, GptModel};
use shared::tokenizer::TokenizerSpec;
use tch::{nn::VarStore, Device, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.10",
    summary: "autoregressive vs bidirectional: which outputs depend on which inputs under causal, bidirectional and prefix-LM masks",
    run: |_| Report::new(&run()?),
};

pub const LENGTH: i64 = 6;
pub const PREFIX: i64 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Dependence {
    pub mask: String,
    /// `depends[i][j]`: the output at position i changed when the token at j changed.
    pub depends: Vec<Vec<bool>>,
    /// Positions whose output depends on every input token.
    pub see_everything: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_10 {
    pub masks: Vec<Dependence>,
}

/// Which outputs of a 2-layer random model with `mask` change when each input changes.
pub fn dependence(mask: AttentionMask) -> Result<Vec<Vec<bool>>> {
    let config = GptConfig {
        vocab_size: 16,
        context_length: LENGTH,
        emb_dim: 16,
        n_heads: 2,
        n_layers: 2,
        drop_rate: 0.0,
        attention_mask: mask,
        tokenizer: TokenizerSpec::Char { chars: "abcdefghijklmnop".to_string() },
        ..GptConfig::gpt2_small()
    };
    let vs = VarStore::new(Device::Cpu);
    let model = {
        let _rng = shared::core::device::global_rng_lock();
        tch::manual_seed(21);
        GptModel::new(&vs.root(), &config)?
    };
    let ids: Vec<i64> = (0..LENGTH).map(|i| (3 * i + 1) % 16).collect();
    let base = tch::no_grad(|| model.forward_t(&Tensor::from_slice(&ids).view([1, -1]), false));
    let mut depends = vec![vec![false; LENGTH as usize]; LENGTH as usize];
    for j in 0..LENGTH as usize {
        let mut changed = ids.clone();
        changed[j] = (changed[j] + 5) % 16;
        let out = tch::no_grad(|| model.forward_t(&Tensor::from_slice(&changed).view([1, -1]), false));
        let difference = (out - &base).abs().amax([-1].as_slice(), false).squeeze_dim(0).to_kind(Kind::Double);
        for (i, row) in depends.iter_mut().enumerate() {
            row[j] = difference.double_value(&[i as i64]) > 1e-6;
        }
    }
    Ok(depends)
}

pub fn run() -> Result<Ex21_10> {
    let masks = [
        ("causal (GPT)", AttentionMask::Causal),
        ("bidirectional (BERT-like)", AttentionMask::Prefix(LENGTH)),
        ("prefix LM, prefix 3", AttentionMask::Prefix(PREFIX)),
    ]
    .into_iter()
    .map(|(name, mask)| {
        let depends = dependence(mask)?;
        let see_everything = depends.iter().filter(|row| row.iter().all(|&d| d)).count();
        Ok(Dependence { mask: name.to_string(), depends, see_everything })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(Ex21_10 { masks })
}

impl fmt::Display for Ex21_10 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Which outputs (rows) change when one input token (column) changes, {LENGTH} tokens, 2 layers:")?;
        for d in &self.masks {
            writeln!(f, "  {} ({} of {LENGTH} outputs see the whole input):", d.mask, d.see_everything)?;
            for row in &d.depends {
                let cells: Vec<&str> = row.iter().map(|&x| if x { "#" } else { "." }).collect();
                writeln!(f, "    {}", cells.join(" "))?;
            }
        }
        let [causal, bidirectional, prefix] = &self.masks[..] else { unreachable!("three masks") };
        writeln!(
            f,
            "(a) Generation: only the causal model's outputs ignore later tokens, so it is trained on every next \
             token at once and can generate left to right, caching what it computed (the triangle above). A \
             bidirectional model's outputs all change when any token changes: it has no left-to-right order to \
             sample from."
        )?;
        writeln!(
            f,
            "(b) Classification: in the bidirectional model {} of {LENGTH} positions see the whole text, in the \
             causal one {} (the last: chapter 6 classifies from it). Encoders build every token's representation \
             from both sides, which suits labelling whole texts and single tokens.",
            bidirectional.see_everything, causal.see_everything
        )?;
        writeln!(
            f,
            "(c) Yes: read the last position (chapter 6), put the task in the prompt, or train with a prefix-LM mask: \
             above, the first {PREFIX} outputs depend on all {PREFIX} prefix tokens ({} of {PREFIX} rows full across \
             the prefix), both ways like an encoder, while the positions after it stay causal and can still generate.",
            prefix.depends.iter().take(PREFIX as usize).filter(|row| row[..PREFIX as usize].iter().all(|&d| d)).count()
        )?;
        write!(
            f,
            "(d) With enough parameters and data a decoder-only model closes most of the gap on understanding tasks, \
             and it keeps generation: scale can buy back what the one-directional mask costs, which is why one \
             decoder-only architecture replaced the split into encoders and decoders."
        )
    }
}

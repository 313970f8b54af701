//! Listing 4.1: the placeholder GPT: embeddings, dropout and the output head, with blocks
//! and the final norm left as identity functions (they are filled in later in the chapter).

use shared::core::init;
use shared::model::GptConfig;
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct DummyGptModel {
    pub tok_emb: nn::Embedding,
    pub pos_emb: nn::Embedding,
    pub out_head: nn::Linear,
    pub drop_rate: f64,
}

impl DummyGptModel {
    pub fn new(path: &nn::Path, cfg: &GptConfig) -> Self {
        Self {
            tok_emb: init::embedding(path / "tok_emb", cfg.vocab_size, cfg.emb_dim),
            pos_emb: init::embedding(path / "pos_emb", cfg.context_length, cfg.emb_dim),
            out_head: init::linear(path / "out_head", cfg.emb_dim, cfg.vocab_size, false),
            drop_rate: cfg.drop_rate,
        }
    }

    pub fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        let tokens = idx.size()[1];
        let positions = Tensor::arange(tokens, (Kind::Int64, idx.device()));
        let x = (idx.apply(&self.tok_emb) + positions.apply(&self.pos_emb)).dropout(self.drop_rate, train);
        // DummyTransformerBlock and DummyLayerNorm: identity
        x.apply(&self.out_head)
    }
}

//! Section A.5, listing A.4: a multilayer perceptron with two hidden layers (30 and 20
//! units, ReLU). Parameters are named like the book's `state_dict` (`layers.0.weight`, ...).

use shared::core::init;
use tch::{nn, Tensor};

/// The hidden layer sizes.
pub const HIDDEN: [i64; 2] = [30, 20];

#[derive(Debug)]
pub struct NeuralNetwork {
    pub layers: [nn::Linear; 3],
}

impl NeuralNetwork {
    /// Creates the layers in PyTorch's order with PyTorch's initializers.
    pub fn new(path: &nn::Path, num_inputs: i64, num_outputs: i64) -> Self {
        let layers = path / "layers";
        Self {
            layers: [
                init::linear(&layers / 0, num_inputs, HIDDEN[0], true), // 1st hidden layer
                init::linear(&layers / 2, HIDDEN[0], HIDDEN[1], true),  // 2nd hidden layer
                init::linear(&layers / 4, HIDDEN[1], num_outputs, true), // output layer
            ],
        }
    }

    /// Logits for `x` of shape `(batch, num_inputs)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.layers[0]).relu().apply(&self.layers[1]).relu().apply(&self.layers[2])
    }

    /// Trainable parameters, counted over the layers (Exercise A.1 "by count").
    pub fn num_parameters(&self) -> i64 {
        self.layers.iter().map(|l| l.ws.numel() as i64 + l.bs.as_ref().map_or(0, |b| b.numel() as i64)).sum()
    }
}

impl nn::Module for NeuralNetwork {
    fn forward(&self, xs: &Tensor) -> Tensor {
        NeuralNetwork::forward(self, xs)
    }
}

/// The same count from the layer sizes: `in * 30 + 30 + 30 * 20 + 20 + 20 * out + out`.
pub fn parameter_formula(num_inputs: i64, num_outputs: i64) -> i64 {
    let sizes = [num_inputs, HIDDEN[0], HIDDEN[1], num_outputs];
    sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

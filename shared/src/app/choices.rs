//! The command-line names of the library's enums. The library's types know nothing of
//! `clap`; this module gives each one that a flag takes its values and their help, as
//! `clap::ValueEnum` would derive them (kebab-case names unless the flag has always used
//! snake_case, help from the variant's doc comment).

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::model::classifier::{TokenPosition, Trainable};
use crate::model::positions::PosEncoding;
use crate::nn::{Activation, Granularity, QuantScheme};
use crate::train::distributed::Backend;
use crate::train::{LrDecay, TrainMode};

/// `impl ValueEnum for Type` from its variants' command-line names and optional help.
macro_rules! choices {
    ($type:ty { $($variant:ident => $name:literal $(: $help:literal)?),+ $(,)? }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$(<$type>::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $(<$type>::$variant => PossibleValue::new($name)$(.help($help))?,)+
                })
            }
        }
    };
}

choices!(TrainMode {
    Book => "book": "The book's code: bit-exact with PyTorch",
    Fast => "fast": "Fused kernels and optimizer; bfloat16 autocast on CUDA",
});

choices!(LrDecay {
    Constant => "constant": "The learning rate stays at --lr after the warmup (the chapters')",
    Cosine => "cosine": "Half a cosine from --lr down to --min-lr at the last step (appendix D)",
});

choices!(Trainable {
    LastBlock => "last-block": "The book's choice: the last transformer block, the final norm and the head",
    All => "all": "Every parameter (exercise 6.2)",
});

choices!(TokenPosition { Last => "last", First => "first" });

choices!(PosEncoding {
    Learned => "learned": "A trained `(context_length, emb_dim)` table added to the token embeddings: GPT-2",
    Rope => "rope": "Queries and keys rotated by their absolute position in every attention layer",
    Sinusoidal => "sinusoidal": "A fixed table of sines and cosines added to the token embeddings",
    None => "none": "No position information besides the causal mask",
});

choices!(Activation { GeluTanh => "gelu_tanh", Gelu => "gelu", Silu => "silu" });

choices!(QuantScheme {
    Fixed => "fixed": "Naive round-to-nearest on a fixed grid over [-1, 1] (no scale fitted to the weights; weights outside are clipped)",
    Absmax => "absmax": "Symmetric: one scale maps the largest magnitude to the largest integer (`2^(bits-1) - 1`); zero stays exactly zero",
    ZeroPoint => "zero-point": "Asymmetric: a scale and an integer zero point map the range `[min, max]` (widened to include 0) onto all `2^bits` levels",
});

choices!(Granularity {
    PerTensor => "per-tensor",
    PerChannel => "per-channel": "One per output channel (row of `[out, in]`)",
});

choices!(Backend {
    Gloo => "gloo": "Gloo, over TCP: CPU tensors",
    Nccl => "nccl": "NVIDIA's NCCL: CUDA tensors",
});

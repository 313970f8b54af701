//! The chapter's main run: sections 4.1-4.7, computing what the book prints. Seeded parts
//! run on the CPU, where the numbers are PyTorch's; like PyTorch modules, the models are in
//! training mode (dropout on) until generation switches to evaluation mode.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use shared::app::plot;
use shared::core::device::seed_everything;
use shared::core::init;
use shared::core::tensors::{format_rows, rows_f32, vec_f32};
use shared::generate::generate_text_simple;
use shared::model::{GptConfig, GptModel, ParameterCounts, TransformerBlock};
use shared::nn::{gelu, FeedForward, LayerNorm};
use shared::tokenizer::Gpt2Tokenizer;
use tch::{nn, Device, Kind, Tensor};

use crate::dummy::DummyGptModel;
use crate::shortcut::ExampleDeepNeuralNetwork;

/// The prompt of section 4.7.
pub const PROMPT: &str = "Hello, I am";
/// New tokens generated from it (the book's output has 4 + 6 = 10 tokens).
pub const NEW_TOKENS: i64 = 6;

#[derive(Debug, Clone, Serialize)]
pub struct Walkthrough {
    pub batch: Vec<Vec<i64>>,
    pub dummy_logits_shape: Vec<i64>,
    // 4.2
    pub ln_layer_out: Vec<Vec<f32>>,
    pub ln_mean: Vec<f32>,
    pub ln_var: Vec<f32>,
    pub ln_normed_mean: Vec<f32>,
    pub ln_normed_var: Vec<f32>,
    pub ln_module_mean: Vec<f32>,
    pub ln_module_var: Vec<f32>,
    // 4.3
    pub activation_inputs: Vec<f32>,
    pub gelu_values: Vec<f32>,
    pub relu_values: Vec<f32>,
    /// The PNG with both curves on [-3, 3] (GELU blue, ReLU orange).
    pub activation_plot: String,
    pub ff_output_shape: Vec<i64>,
    // 4.4
    pub grads_without_shortcut: Vec<f64>,
    pub grads_with_shortcut: Vec<f64>,
    // 4.5
    pub block_output_shape: Vec<i64>,
    // 4.6
    pub model_logits_shape: Vec<i64>,
    pub model_logits_first_row_first5: Vec<f32>,
    pub parameters: ParameterCounts,
    pub total_parameters: i64,
    pub parameters_with_weight_tying: i64,
    pub size_mb: f64,
    // 4.7
    pub generated_ids: Vec<i64>,
    pub generated_text: String,
    /// Where it ran (`--device`).
    pub device: String,
}

/// Runs sections 4.1-4.7 on `device` (about 650 MB for the GPT-2 small model); the
/// GELU/ReLU plot goes to `out_dir/gelu-relu.png`. Random numbers are drawn on the CPU and
/// moved, as the models' weights are ([`init`]), so the book's values come out on a GPU too,
/// up to its rounding; only dropout (4.1, 4.6) draws from the GPU's own generator there.
pub fn run(seed: u64, device: Device, out_dir: &Path) -> Result<Walkthrough> {
    let cpu = Device::Cpu;
    let cfg = GptConfig::gpt2_small();
    let batch = crate::example_batch(device);

    // 4.1: the placeholder model.
    seed_everything(seed);
    let vs = nn::VarStore::new(device);
    let dummy = DummyGptModel::new(&vs.root(), &cfg);
    let dummy_logits = dummy.forward_t(&batch, true);

    // 4.2: normalising a layer's outputs by hand (unbiased variance, as torch.var) and with LayerNorm.
    seed_everything(seed);
    let batch_example = Tensor::randn([2, 5], (Kind::Float, cpu)).to_device(device);
    let vs = nn::VarStore::new(device);
    let layer = init::linear(vs.root() / "0", 5, 6, true);
    let out = batch_example.apply(&layer).relu();
    let mean = out.mean_dim(-1, true, Kind::Float);
    let var = out.var_dim(-1, true, true);
    let normed = (&out - &mean) / var.sqrt();
    let ln = LayerNorm::new(&vs.root().sub("ln"), 5);
    let ln_out = ln.forward(&batch_example);

    // 4.3: GELU against ReLU, and the feed-forward module's shapes.
    let inputs = Tensor::linspace(-3.0, 3.0, 7, (Kind::Float, device));
    let activation_plot = out_dir.join("gelu-relu.png");
    let curve_x = Tensor::linspace(-3.0, 3.0, 200, (Kind::Double, cpu));
    let xs = Vec::<f64>::try_from(&curve_x)?;
    let (gelu_ys, relu_ys) = (Vec::<f64>::try_from(gelu(&curve_x))?, Vec::<f64>::try_from(curve_x.relu())?);
    plot::Chart {
        series: vec![
            plot::Series { xs: &xs, ys: &gelu_ys, color: plot::PALETTE[0], label: "GELU" },
            plot::Series { xs: &xs, ys: &relu_ys, color: plot::PALETTE[1], label: "ReLU" },
        ],
        x_label: "x",
        y_label: "Activation",
        top_axis: None,
        width: 640,
        height: 400,
    }
    .write_png(&activation_plot)?;
    let ff = FeedForward::new(&vs.root().sub("ff"), cfg.emb_dim);
    let ff_out = ff.forward(&Tensor::rand([2, 3, cfg.emb_dim], (Kind::Float, cpu)).to_device(device));

    // 4.4: gradients with and without shortcut connections.
    let sample = Tensor::from_slice(&[1.0f32, 0.0, -1.0]).view([1, 3]).to_device(device);
    let sizes = [3, 3, 3, 3, 3, 1];
    let gradients = |use_shortcut| {
        seed_everything(seed);
        let vs = nn::VarStore::new(device);
        ExampleDeepNeuralNetwork::new(&vs.root(), &sizes, use_shortcut).weight_gradients(&sample)
    };
    let (grads_without_shortcut, grads_with_shortcut) = (gradients(false), gradients(true));

    let _no_grad = tch::no_grad_guard();
    // 4.5: a transformer block keeps the input's shape.
    seed_everything(seed);
    let x = Tensor::rand([2, 4, cfg.emb_dim], (Kind::Float, cpu)).to_device(device);
    let vs = nn::VarStore::new(device);
    let block = TransformerBlock::new(&vs.root(), &cfg)?;
    let block_out = block.forward_t(&x, true);

    // 4.6: the whole model, then 4.7: greedy generation in evaluation mode.
    seed_everything(seed);
    let vs = nn::VarStore::new(device);
    let model = GptModel::new(&vs.root(), &cfg)?;
    let logits = model.forward_t(&batch, true);
    let parameters = ParameterCounts::from_named(vs.variables().iter().map(|(n, t)| (n.as_str(), t.numel() as i64)));
    let tokenizer = Gpt2Tokenizer::new();
    let prompt: Vec<i64> = tokenizer.encode(PROMPT).into_iter().map(i64::from).collect();
    let generated = generate_text_simple(
        &model,
        &Tensor::from_slice(&prompt).view([1, -1]).to_device(device),
        NEW_TOKENS,
        cfg.context_length,
    )?;
    let generated_ids = Vec::<i64>::try_from(generated.get(0))?;
    let ids: Vec<u32> = generated_ids.iter().map(|&id| id as u32).collect();

    Ok(Walkthrough {
        batch: shared::core::tensors::rows_i64(&batch),
        dummy_logits_shape: dummy_logits.size(),
        ln_layer_out: rows_f32(&out),
        ln_mean: vec_f32(&mean),
        ln_var: vec_f32(&var),
        ln_normed_mean: vec_f32(&normed.mean_dim(-1, false, Kind::Float)),
        ln_normed_var: vec_f32(&normed.var_dim(-1, true, false)),
        ln_module_mean: vec_f32(&ln_out.mean_dim(-1, false, Kind::Float)),
        ln_module_var: vec_f32(&ln_out.var_dim(-1, false, false)),
        activation_inputs: vec_f32(&inputs),
        gelu_values: vec_f32(&gelu(&inputs)),
        relu_values: vec_f32(&inputs.relu()),
        activation_plot: activation_plot.display().to_string(),
        ff_output_shape: ff_out.size(),
        grads_without_shortcut,
        grads_with_shortcut,
        block_output_shape: block_out.size(),
        model_logits_shape: logits.size(),
        model_logits_first_row_first5: vec_f32(&logits.get(0).get(0).narrow(0, 0, 5)),
        total_parameters: parameters.total(),
        parameters_with_weight_tying: parameters.with_weight_tying(),
        size_mb: parameters.size_mb_f32(),
        parameters,
        generated_text: tokenizer.decode(&ids)?,
        generated_ids,
        device: shared::core::device::device_name(device),
    })
}

impl fmt::Display for Walkthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Running on {}\n", self.device)?;
        writeln!(f, "== 4.1 A placeholder GPT model ==")?;
        writeln!(f, "Batch (\"Every effort moves you\", \"Every day holds a\"): {:?}", self.batch)?;
        writeln!(f, "Output shape: {:?}", self.dummy_logits_shape)?;

        writeln!(f, "\n== 4.2 Layer normalization ==")?;
        writeln!(f, "Layer outputs:\n{}", format_rows(&self.ln_layer_out))?;
        writeln!(f, "Mean: {:?}\nVariance: {:?}", self.ln_mean, self.ln_var)?;
        writeln!(f, "Normalized: mean {:?}, variance {:?}", self.ln_normed_mean, self.ln_normed_var)?;
        writeln!(f, "LayerNorm: mean {:?}, variance {:?}", self.ln_module_mean, self.ln_module_var)?;

        writeln!(f, "\n== 4.3 GELU and the feed-forward network ==")?;
        writeln!(f, "     x  GELU(x)  ReLU(x)")?;
        for ((x, g), r) in self.activation_inputs.iter().zip(&self.gelu_values).zip(&self.relu_values) {
            writeln!(f, "{x:6.1}  {g:7.4}  {r:7.4}")?;
        }
        writeln!(f, "Plot of both curves (GELU blue, ReLU orange): {}", self.activation_plot)?;
        writeln!(f, "FeedForward output shape: {:?}", self.ff_output_shape)?;

        writeln!(f, "\n== 4.4 Shortcut connections (mean |gradient| of each layer's weight) ==")?;
        for (i, (without, with)) in self.grads_without_shortcut.iter().zip(&self.grads_with_shortcut).enumerate() {
            writeln!(f, "layers.{i}.0.weight  without shortcut {without:.10}  with shortcut {with:.10}")?;
        }

        writeln!(f, "\n== 4.5 Transformer block ==")?;
        writeln!(f, "Input shape: [2, 4, 768]\nOutput shape: {:?}", self.block_output_shape)?;

        writeln!(f, "\n== 4.6 The GPT model ==")?;
        writeln!(
            f,
            "Output shape: {:?}, first logits {:?}",
            self.model_logits_shape, self.model_logits_first_row_first5
        )?;
        writeln!(f, "Total number of parameters: {}", self.total_parameters)?;
        writeln!(f, "Number of trainable parameters considering weight tying: {}", self.parameters_with_weight_tying)?;
        writeln!(f, "Total size of the model: {:.2} MB", self.size_mb)?;

        writeln!(f, "\n== 4.7 Generating text (greedy, evaluation mode) ==")?;
        writeln!(f, "Output: {:?}\nOutput length: {}", self.generated_ids, self.generated_ids.len())?;
        write!(f, "{:?}", self.generated_text)
    }
}

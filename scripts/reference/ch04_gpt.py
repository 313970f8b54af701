"""PyTorch reference values for ch04-gpt: the book's chapter 4 code, run on the CPU.
Run through scripts/reference/generate.sh.
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from gpt_init import GPT_CONFIG_124M, GPTModel, TransformerBlock  # noqa: E402

out = {"torch": torch.__version__}


class LayerNorm(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class GELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


# 4.2 Layer normalization.
torch.manual_seed(123)
batch_example = torch.randn(2, 5)
layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
o = layer(batch_example)
out["ln_layer_out"] = o.tolist()
mean, var = o.mean(dim=-1, keepdim=True), o.var(dim=-1, keepdim=True)
out["ln_mean"], out["ln_var"] = mean.flatten().tolist(), var.flatten().tolist()
normed = (o - mean) / torch.sqrt(var)
out["ln_normed"] = normed.tolist()
out["ln_normed_mean"] = normed.mean(dim=-1).tolist()
out["ln_normed_var"] = normed.var(dim=-1).tolist()
ln = LayerNorm(5)
o = ln(batch_example)
out["ln_module_mean"] = o.mean(dim=-1).tolist()
out["ln_module_var"] = o.var(dim=-1, unbiased=False).tolist()


# 4.4 Shortcut connections.
class ExampleDeepNeuralNetwork(nn.Module):
    def __init__(self, layer_sizes, use_shortcut):
        super().__init__()
        self.use_shortcut = use_shortcut
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(layer_sizes[i], layer_sizes[i + 1]), GELU())
                                     for i in range(len(layer_sizes) - 1)])

    def forward(self, x):
        for layer in self.layers:
            y = layer(x)
            x = x + y if self.use_shortcut and x.shape == y.shape else y
        return x


def gradients(model, x):
    loss = nn.MSELoss()(model(x), torch.tensor([[0.0]]))
    loss.backward()
    return [p.grad.abs().mean().item() for n, p in model.named_parameters() if "weight" in n]


sizes, sample = [3, 3, 3, 3, 3, 1], torch.tensor([[1.0, 0.0, -1.0]])
torch.manual_seed(123)
out["grads_without_shortcut"] = gradients(ExampleDeepNeuralNetwork(sizes, False), sample)
torch.manual_seed(123)
out["grads_with_shortcut"] = gradients(ExampleDeepNeuralNetwork(sizes, True), sample)
# 4.5-4.6: a block and the whole model (PyTorch modules start in training mode: dropout on).
batch = torch.tensor([[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]])  # "Every effort moves you", "Every day holds a"
torch.manual_seed(123)
x = torch.rand(2, 4, 768)
block = TransformerBlock(GPT_CONFIG_124M)
out["block_output_shape"] = list(block(x).shape)
torch.manual_seed(123)
model = GPTModel(GPT_CONFIG_124M)
logits = model(batch)
out["model_logits_shape"] = list(logits.shape)
out["model_logits_first_row_first5"] = logits[0, 0, :5].tolist()
out["model_logits_last_row_last5"] = logits[1, 3, -5:].tolist()

# 4.7: greedy generation from "Hello, I am" in evaluation mode.
model.eval()
idx = torch.tensor([[15496, 11, 314, 716]])
with torch.no_grad():
    for _ in range(6):
        next_id = torch.argmax(torch.softmax(model(idx[:, -1024:])[:, -1, :], dim=-1), dim=-1, keepdim=True)
        idx = torch.cat((idx, next_id), dim=1)
out["generated_ids"] = idx[0].tolist()
print(json.dumps(out, indent=1))

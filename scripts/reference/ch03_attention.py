"""PyTorch reference values for ch03-attention: the book's chapter 3 code, run on the CPU.

Keys `inputs`, `sa_v1`, `sa_v2` and `mha` hold the same values as the independent
reference ../shared/fixtures/pytorch-parity/ch03-attention.json (there rounded to 4
decimals). Run through scripts/reference/generate.sh.
"""
import json, torch, torch.nn as nn
inputs = torch.tensor([[0.43, 0.15, 0.89],[0.55, 0.87, 0.66],[0.57, 0.85, 0.64],[0.22, 0.58, 0.33],[0.77, 0.25, 0.10],[0.05, 0.80, 0.55]])
out = {"torch": torch.__version__, "inputs": inputs.tolist()}
query = inputs[1]
s = torch.empty(inputs.shape[0])
for i, x_i in enumerate(inputs): s[i] = torch.dot(x_i, query)
out["attn_scores_2"] = s.tolist()
out["attn_weights_2_tmp"] = (s / s.sum()).tolist()
w = torch.softmax(s, dim=0); out["attn_weights_2"] = w.tolist()
out["context_vec_2"] = (w @ inputs).tolist()
A = inputs @ inputs.T; out["attn_scores"] = A.tolist()
W = torch.softmax(A, dim=-1); out["attn_weights"] = W.tolist(); out["all_context_vecs"] = (W @ inputs).tolist()
x_2 = inputs[1]; d_in, d_out = 3, 2
torch.manual_seed(123)
Wq = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False); Wk = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False); Wv = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
q2 = x_2 @ Wq; keys = inputs @ Wk; values = inputs @ Wv
out["query_2"] = q2.tolist(); out["attn_score_22"] = (q2.dot(keys[1])).item()
s2 = q2 @ keys.T; out["qk_attn_scores_2"] = s2.tolist()
w2 = torch.softmax(s2 / keys.shape[-1]**0.5, dim=-1); out["qk_attn_weights_2"] = w2.tolist(); out["qk_context_vec_2"] = (w2 @ values).tolist()
class SA1(nn.Module):
    def __init__(s, d_in, d_out):
        super().__init__(); s.W_query = nn.Parameter(torch.rand(d_in, d_out)); s.W_key = nn.Parameter(torch.rand(d_in, d_out)); s.W_value = nn.Parameter(torch.rand(d_in, d_out))
    def forward(s, x):
        k = x @ s.W_key; q = x @ s.W_query; v = x @ s.W_value
        return torch.softmax(q @ k.T / k.shape[-1]**0.5, dim=-1) @ v
class SA2(nn.Module):
    def __init__(s, d_in, d_out, qkv_bias=False):
        super().__init__(); s.W_query = nn.Linear(d_in, d_out, bias=qkv_bias); s.W_key = nn.Linear(d_in, d_out, bias=qkv_bias); s.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
    def forward(s, x):
        k = s.W_key(x); q = s.W_query(x); v = s.W_value(x)
        return torch.softmax(q @ k.T / k.shape[-1]**0.5, dim=-1) @ v
torch.manual_seed(123); out["sa_v1"] = SA1(d_in, d_out)(inputs).tolist()
torch.manual_seed(789); sa_v2 = SA2(d_in, d_out); out["sa_v2"] = sa_v2(inputs).tolist()
q = sa_v2.W_query(inputs); k = sa_v2.W_key(inputs)
aw = torch.softmax(q @ k.T / k.shape[-1]**0.5, dim=-1); out["causal_attn_weights"] = aw.tolist()
cl = aw.shape[0]; ms = torch.tril(torch.ones(cl, cl)); m = aw * ms; out["masked_simple"] = m.tolist()
out["masked_simple_norm"] = (m / m.sum(dim=-1, keepdim=True)).tolist()
sc = q @ k.T; mask = torch.triu(torch.ones(cl, cl), diagonal=1); masked = sc.masked_fill(mask.bool(), -torch.inf)
out["masked_scores"] = [[x if x != float('-inf') else None for x in row] for row in masked.tolist()]
aw = torch.softmax(masked / k.shape[-1]**0.5, dim=1); out["masked_attn_weights"] = aw.tolist()
torch.manual_seed(123); do = nn.Dropout(0.5); out["dropout_ones"] = do(torch.ones(6, 6)).tolist()
torch.manual_seed(123); out["dropout_attn_weights"] = do(aw).tolist()
batch = torch.stack((inputs, inputs), dim=0)
class CA(nn.Module):
    def __init__(s, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__(); s.d_out = d_out
        s.W_query = nn.Linear(d_in, d_out, bias=qkv_bias); s.W_key = nn.Linear(d_in, d_out, bias=qkv_bias); s.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        s.dropout = nn.Dropout(dropout); s.register_buffer('mask', torch.triu(torch.ones(context_length, context_length), diagonal=1))
    def forward(s, x):
        b, n, d = x.shape
        k = s.W_key(x); q = s.W_query(x); v = s.W_value(x)
        a = q @ k.transpose(1, 2); a.masked_fill_(s.mask.bool()[:n, :n], -torch.inf)
        w = torch.softmax(a / k.shape[-1]**0.5, dim=-1); w = s.dropout(w)
        return w @ v
torch.manual_seed(123); out["causal_attention"] = CA(3, 2, 6, 0.0)(batch).tolist()
class Wrap(nn.Module):
    def __init__(s, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(); s.heads = nn.ModuleList([CA(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)])
    def forward(s, x): return torch.cat([h(x) for h in s.heads], dim=-1)
torch.manual_seed(123); out["mha_wrapper"] = Wrap(3, 2, 6, 0.0, 2)(batch).tolist()
torch.manual_seed(123); out["mha_wrapper_d_out1"] = Wrap(3, 1, 6, 0.0, 2)(batch).tolist()
class MHA(nn.Module):
    def __init__(s, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(); s.d_out = d_out; s.num_heads = num_heads; s.head_dim = d_out // num_heads
        s.W_query = nn.Linear(d_in, d_out, bias=qkv_bias); s.W_key = nn.Linear(d_in, d_out, bias=qkv_bias); s.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        s.out_proj = nn.Linear(d_out, d_out); s.dropout = nn.Dropout(dropout)
        s.register_buffer('mask', torch.triu(torch.ones(context_length, context_length), diagonal=1))
    def forward(s, x):
        b, n, d = x.shape
        k = s.W_key(x).view(b, n, s.num_heads, s.head_dim).transpose(1, 2)
        q = s.W_query(x).view(b, n, s.num_heads, s.head_dim).transpose(1, 2)
        v = s.W_value(x).view(b, n, s.num_heads, s.head_dim).transpose(1, 2)
        a = q @ k.transpose(2, 3); a.masked_fill_(s.mask.bool()[:n, :n], -torch.inf)
        w = s.dropout(torch.softmax(a / k.shape[-1]**0.5, dim=-1))
        c = (w @ v).transpose(1, 2).contiguous().view(b, n, s.d_out)
        return s.out_proj(c)
torch.manual_seed(123); out["mha"] = MHA(3, 2, 6, 0.0, 2)(batch).tolist()
a = torch.tensor([[[[0.2745, 0.6584, 0.2775, 0.8573],[0.8993, 0.0390, 0.9268, 0.7388],[0.7179, 0.7058, 0.9156, 0.4340]],[[0.0772, 0.3565, 0.1479, 0.5331],[0.4066, 0.2318, 0.4545, 0.9737],[0.4606, 0.5159, 0.4220, 0.5786]]]])
out["batched_matmul"] = (a @ a.transpose(2, 3)).tolist()
print(json.dumps(out, indent=1))

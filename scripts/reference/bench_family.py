"""The transformers side of scripts/bench-families.sh, printed as JSON.

    bench_family.py make DIR
        writes a random model with Llama 3.2 1B's exact shapes (2048 wide, 16 layers, 32
        query and 8 key/value heads, 8192-wide SwiGLU, 128,256 tokens, tied head, RoPE base
        500,000 with Llama 3's scaling) to DIR in bfloat16, as the hub ships it; no tokenizer
    bench_family.py generate DIR [--max-new-tokens 32]
        greedy decoding with the KV cache in float32 (eager attention), timed as
        `ch05-pretraining bench-generate` times ours: the ids of "Hello, I am" in GPT-2's
        vocabulary, an untimed warm-up of 8 tokens, then the timed tokens; with the process's
        peak resident memory
    bench_family.py run -- COMMAND...
        runs COMMAND and prints its JSON output with the child's peak resident memory added
"""
import argparse
import json
import resource
import subprocess
import sys
import time

PROMPT = [15496, 11, 314, 716]


def peak_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024


def make(out):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        bos_token_id=128000,
        eos_token_id=128001,
    )
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    model.tie_weights()  # to_empty gives the tied head a storage of its own
    with torch.no_grad():
        for _, parameter in model.named_parameters():
            parameter.normal_(0.0, 0.02)
    model.save_pretrained(out)
    print(json.dumps({"wrote": out, "parameters": sum(p.numel() for p in model.parameters())}))


def generate(directory, new_tokens):
    import torch
    from transformers import LlamaForCausalLM

    torch.set_grad_enabled(False)
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor([PROMPT])
    settings = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)
    model.generate(ids, max_new_tokens=8, min_new_tokens=8, **settings)
    start = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **settings)
    seconds = time.perf_counter() - start
    assert out.shape[1] == len(PROMPT) + new_tokens
    print(
        json.dumps(
            {
                "library": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "new_tokens": new_tokens,
                "seconds": seconds,
                "tokens_per_s": new_tokens / seconds,
                "peak_mb": peak_mb(),
            }
        )
    )


def run(command):
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output)
    result["peak_mb"] = peak_mb(resource.RUSAGE_CHILDREN)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("make").add_argument("dir")
    gen = sub.add_parser("generate")
    gen.add_argument("dir")
    gen.add_argument("--max-new-tokens", type=int, default=32)
    runner = sub.add_parser("run")
    runner.add_argument("child", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "make":
        make(args.dir)
    elif args.command == "generate":
        generate(args.dir, args.max_new_tokens)
    else:
        run([a for a in args.child if a != "--"])


if __name__ == "__main__":
    main()

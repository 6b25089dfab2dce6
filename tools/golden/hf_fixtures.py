"""hf_fixtures.py — tiny Hugging Face checkpoints and their golden outputs.

Builds small random-weight models of each architecture hearth converts
(llama, qwen2, qwen3, qwen3_moe, qwen2_moe, mixtral) with transformers, saves
them as a Hugging Face checkpoint directory (config.json, safetensors, a
small byte-level BPE tokenizer.json and tokenizer_config.json), and records
what transformers computes for them: the logits of every position of a fixed
token sequence (forward in float64 on the CPU) and a greedy continuation.
The tokenizer's encodings of a few strings are recorded too.

Weights are drawn with scales that keep activations near unit size, so the
logits differ strongly between tokens and routers really choose experts.

usage: python3 hf_fixtures.py OUTDIR
"""
import json
import math
import os
import sys

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, normalizers

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "The quick brown fox jumps over the lazy dog 1234567890 times!",
    "def forward(self, x):\n    return self.linear(x) + 3.14159\n",
    "Il était une fois une petite fille. Ça va? Größe, naïve café — 東京 🤗",
    "  leading spaces, trailing spaces   \n\n\tand tabs\r\n",
    "Hello world! How are you today? I'm fine, thanks. You'll see; they'd agree.",
] * 20

TEST_STRINGS = [
    "Hello world",
    " Hello world",
    "Once upon a time, there was a little girl named Lily.",
    "   three spaces and 12345 digits",
    "line one\nline two\n\n\ttabbed",
    "naïve café 東京 🤗",
    "<|im_start|>user\nhi<|im_end|>",
]

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


def make_tokenizer(split_regex, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(split_regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    return tok


def reinit(model, seed):
    """Unit-scale weights: linear ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norms ~ 1 + N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                if "norm" in name:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:  # biases
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name or "lm_head" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else 1.0 / math.sqrt(p.shape[-1])))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def build(arch, vocab):
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=vocab - 3)
    if arch == "llama":
        cfg = transformers.LlamaConfig(**common, rope_theta=10000.0, tie_word_embeddings=False)
        return cfg, transformers.LlamaForCausalLM, torch.float32, LLAMA3_SPLIT
    if arch == "qwen2":
        cfg = transformers.Qwen2Config(**common, rope_theta=1000000.0, tie_word_embeddings=True)
        return cfg, transformers.Qwen2ForCausalLM, torch.bfloat16, QWEN2_SPLIT
    if arch == "qwen3":
        cfg = transformers.Qwen3Config(**common, head_dim=32, rope_theta=1000000.0, tie_word_embeddings=True)
        return cfg, transformers.Qwen3ForCausalLM, torch.bfloat16, QWEN2_SPLIT
    if arch == "qwen3_moe":
        cfg = transformers.Qwen3MoeConfig(**common, head_dim=32, rope_theta=1000000.0, tie_word_embeddings=False,
                                          num_experts=16, num_experts_per_tok=4, moe_intermediate_size=32,
                                          norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[])
        return cfg, transformers.Qwen3MoeForCausalLM, torch.bfloat16, QWEN2_SPLIT
    if arch == "qwen2_moe":
        cfg = transformers.Qwen2MoeConfig(**common, rope_theta=1000000.0, tie_word_embeddings=False,
                                          num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                          shared_expert_intermediate_size=64, norm_topk_prob=False,
                                          decoder_sparse_step=1, mlp_only_layers=[])
        return cfg, transformers.Qwen2MoeForCausalLM, torch.bfloat16, QWEN2_SPLIT
    if arch == "mixtral":
        cfg = transformers.MixtralConfig(**common, rope_theta=1000000.0, tie_word_embeddings=False,
                                         num_local_experts=4, num_experts_per_tok=2)
        return cfg, transformers.MixtralForCausalLM, torch.float32, LLAMA3_SPLIT
    raise ValueError(arch)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    vocab = 384
    archs = ["llama", "qwen2", "qwen3", "qwen3_moe", "qwen2_moe", "mixtral"]
    for i, arch in enumerate(archs):
        cfg, cls, dtype, split = build(arch, vocab)
        torch.manual_seed(1000 + i)
        cfg._attn_implementation = "eager"
        model = cls(cfg)
        reinit(model, 2000 + i)
        model = model.to(dtype)
        d = os.path.join(out, arch)
        # Shard the MoE checkpoints so the index file is exercised.
        shard = "200KB" if "moe" in arch else "50MB"
        model.save_pretrained(d, safe_serialization=True, max_shard_size=shard)
        tok = make_tokenizer(split, vocab)
        assert tok.get_vocab_size() == vocab, tok.get_vocab_size()
        tok.save(os.path.join(d, "tokenizer.json"))
        tcfg = {"model_max_length": 512, "eos_token": "<|im_end|>" if "qwen" in arch else "<|endoftext|>",
                "pad_token": "<|endoftext|>", "bos_token": None, "add_bos_token": False,
                "chat_template": CHATML,
                "added_tokens_decoder": {str(tok.token_to_id(s)): {"content": s, "special": True}
                                         for s in SPECIALS}}
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tcfg, f, indent=1)
        # Reference: float64 forward of exactly the stored weights.
        try:
            ref = cls.from_pretrained(d, dtype=torch.float64, attn_implementation="eager",
                                      experts_implementation="eager")
        except (TypeError, ValueError):
            ref = cls.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
        # The fused expert kernels have no float64 path: use the per-expert loop.
        for m in ref.modules():
            if hasattr(m, "config"):
                m.config._experts_implementation = "eager"
        ref.eval()
        g = torch.Generator().manual_seed(7 + i)
        ids = torch.randint(0, vocab - 3, (1, 24), generator=g)
        with torch.no_grad():
            logits = ref(ids).logits[0].to(torch.float32)
            gen = ref.generate(ids[:, :8], max_new_tokens=32, do_sample=False, min_new_tokens=32,
                               pad_token_id=0)
        logits.numpy().tofile(os.path.join(d, "golden.logits.f32le"))
        enc = {s: tok.encode(s, add_special_tokens=False).ids for s in TEST_STRINGS}
        golden = {"arch": arch, "ids": ids[0].tolist(), "logits_shape": list(logits.shape),
                  "greedy_prompt": ids[0, :8].tolist(), "greedy_continuation": gen[0, 8:].tolist(),
                  "tokenizer": enc, "transformers": transformers.__version__, "torch": torch.__version__}
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump(golden, f, indent=1)
        keys = {}
        from safetensors import safe_open
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".safetensors"):
                with safe_open(os.path.join(d, fn), "pt") as sf:
                    for k in sf.keys():
                        keys[k] = list(sf.get_slice(k).get_shape())
        print(arch, dtype, "files", sorted(os.listdir(d)))
        for k in sorted(keys)[:60]:
            print("   ", k, keys[k])
        print("    max |logit|", float(logits.abs().max()), "std", float(logits.std()))


if __name__ == "__main__":
    main()

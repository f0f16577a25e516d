"""A tiny, random Llama and its word-level tokenizer, built offline for tests and benchmarks.

`make_tiny_model` writes a folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load without the network: safetensors weights, ``config.json``,
``generation_config.json``, the tokenizer files and a jinja chat template. The training path then runs
exactly as it would on a real base model (4-bit NF4 quantization included).

Why the tiny model learns reliably, fast and not by luck (measured on the ticket-routing task of
`demo.synthetic`, 4-bit QLoRA on CPU; tests/unit/test_training.py holds the recipe):

* **Word-level vocabulary built from the task's own texts.** Every word (so every routing keyword and
  every queue name) is one token, and the vocabulary holds a few hundred entries. The answer is one
  token followed by ``<|end|>``: the problem is "map a bag of keywords to one of four rows of
  ``lm_head``", with no sub-word spelling to learn. Digits are split one per token, so numbers never
  fall back to ``<unk>``.
* **``initializer_range=0.1`` rather than Llama's 0.02.** After the final RMSNorm the hidden state has
  norm ``sqrt(hidden_size)``, so a logit is at most ``|lm_head row| * sqrt(hidden_size)``. With rows
  drawn at std 0.02 that is about ±2.6 at width 128: even a perfectly aligned hidden state cannot make
  the right token much more likely than the rest, and LoRA does not touch ``lm_head``. At std 0.1 the
  bound is about ±13, which is plenty.
* **Near-uniform attention at the start (``qk_init_scale=0.1``).** With query and key projections 10x
  smaller, every position starts by averaging the tokens before it, so the answer position sees the
  whole ticket as a bag of words from step 0 and the gradient reaches every keyword. At full scale the
  random attention is peaked on arbitrary positions and held-out accuracy stalled near 0.7.
* **Quiet random residual branches (``residual_init_scale=0.1``).** Attention and MLP output
  projections start 10x smaller (the strong form of GPT-2's scaled residual init), so the random layers
  barely scramble the token embeddings and the residual stream reaching the head is still mostly "which
  words were there".
* **Width at least the vocabulary size.** A random model has no pretrained word meanings: for the
  keyword-to-queue map to be learnable from a few hundred examples, the word embeddings must be
  linearly independent, which random vectors are when ``hidden_size >= vocabulary``. The ticket
  vocabulary is about 230 words, so the learning test uses width 256; at 128 held-out accuracy
  plateaued between 0.92 and 0.95.
* **Trainable embeddings in the test (``modules_to_save=embed_tokens``).** Pretrained models arrive
  with embeddings in which "refund" and "invoice" are already neighbours; a random model does not, so
  the test trains the (never quantized) input embeddings in full next to the LoRA adapters. With it,
  400 tickets x 3 epochs reach 1.0 held-out accuracy for every model seed tried (eval loss ~1e-4);
  with LoRA alone, 0.95-0.99.
* **Untied input and output embeddings; a BOS token at position 0.** The random ``lm_head`` rows of the
  four queue names are fixed, nearly orthogonal targets; BOS gives attention heads a constant place to
  park ("attention sink") in long, padded or packed inputs.
* **Tiny widths.** 2 layers (MLP width 2x hidden, 4 heads) keep a 4-bit training step of ~1k tokens
  at tens of milliseconds on a CPU. Widths are multiples of 64, the block size of NF4 quantization.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_tiny_model"]

BOS, EOS, PAD, UNK = "<s>", "<|end|>", "<pad>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS, *ROLE_TOKENS)

# One role marker per turn, the content, then <|end|> (the EOS token, so generation stops after the answer).
# The newlines are cosmetic: the word-level pre-tokenizer drops whitespace.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _train_tokenizer(texts: Iterable[str], min_frequency: int) -> object:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer

    tokenizer = Tokenizer(WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=min_frequency)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def make_tiny_model(
    out_dir: Path,
    texts: Iterable[str],
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    initializer_range: float = 0.1,
    qk_init_scale: float = 0.1,
    residual_init_scale: float = 0.1,
    max_position_embeddings: int = 2048,
    min_frequency: int = 1,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random Llama with a word-level tokenizer trained on ``texts``.

    Args:
        out_dir: Folder to write (created if missing; existing files of the same names are replaced).
        texts: Texts to build the vocabulary from; include every word the model will see (the
            queue names, system prompts and answers too), anything else becomes ``<unk>``.
        hidden_size: Model width; must be divisible by ``num_heads``. For learning tests, at least the
            vocabulary size (see the module docstring).
        num_layers: Number of decoder layers.
        num_heads: Attention heads (as many key/value heads: plain multi-head attention).
        intermediate_size: MLP width; default ``2 * hidden_size``.
        initializer_range: Std of the random weights; keep it near 0.1 (see the module docstring).
        qk_init_scale: Factor on the query and key projections after initialization; small values
            make attention start close to uniform (see the module docstring).
        residual_init_scale: Factor on the attention output and MLP down projections after
            initialization; small values keep the random layers from scrambling the embeddings.
        max_position_embeddings: Longest sequence the model accepts.
        min_frequency: Words seen fewer times than this become ``<unk>``.
        seed: Seed for the random weights; same arguments give identical weights.

    Returns:
        ``out_dir``, ready for ``from_pretrained``.

    Raises:
        ValueError: ``hidden_size`` is not divisible by ``num_heads``, or ``texts`` is empty.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    corpus = [text for text in texts]
    if not corpus:
        raise ValueError("texts is empty: the tokenizer needs words to build its vocabulary from")
    # Role names as plain words too, for templates that spell them out (runner.ml.model's fallback does).
    corpus.append("system user assistant")

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(corpus, min_frequency),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    # Round the vocabulary up to a multiple of 64 so embedding and lm_head shapes stay matmul-friendly.
    vocab_size = -(-len(tokenizer) // 64) * 64

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(qk_init_scale)
            layer.self_attn.k_proj.weight.mul_(qk_init_scale)
            layer.self_attn.o_proj.weight.mul_(residual_init_scale)
            layer.mlp.down_proj.weight.mul_(residual_init_scale)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "tiny_model.json").write_text(
        json.dumps(
            {
                "made_by": "demo.tinymodel.make_tiny_model",
                "seed": seed,
                "initializer_range": initializer_range,
                "qk_init_scale": qk_init_scale,
                "residual_init_scale": residual_init_scale,
                "vocab_words": len(tokenizer),
            },
            indent=2,
        )
    )
    return out_dir

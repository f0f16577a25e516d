"""Convert a GGUF checkpoint into a normal Hugging Face folder (safetensors, tokenizer, chat template).

transformers reads GGUF (``gguf_file=``, with the ``gguf`` package) and dequantizes the weights to
float, but refuses to ``save_pretrained`` the result ("quantized with gguf and is not serializable")
although its weights are plain floats. So the model is rebuilt from the same config without its
``quantization_config`` and given the loaded state dict; the logits of the two are compared before
anything is written.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
import transformers.modeling_gguf_pytorch_utils as gguf_utils
from transformers import AutoModelForCausalLM, AutoTokenizer


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or warnings from transformers inside the block (the caller shows progress)."""
    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    verbosity = logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    # The GGUF reader draws its own tqdm bar, which transformers' switch above does not reach.
    gguf_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def gguf_to_folder(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """Write the model and tokenizer of a GGUF file to ``out_dir`` as safetensors and tokenizer files.

    Args:
        gguf_path: The ``.gguf`` file.
        out_dir: An empty or missing folder.

    Returns:
        What was written: ``architecture``, ``parameters`` (tied weights counted once), ``dtype``,
        ``chat_template`` (bool) and ``max_abs_logit_diff`` between the GGUF model and the rebuilt one.

    Raises:
        ValueError: the rebuilt model's logits differ from the loaded one's, or there is no chat template.
    """
    folder, name = str(gguf_path.parent), gguf_path.name
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        rebuilt = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        rebuilt.load_state_dict(loaded.state_dict())
        rebuilt.generation_config = loaded.generation_config
        rebuilt.eval()
        loaded.eval()
        probe = torch.tensor([list(range(1, 17))])
        with torch.no_grad():
            diff = float((loaded(probe).logits - rebuilt(probe).logits).abs().max())
        if diff != 0.0:
            raise ValueError(f"the rebuilt model's logits differ from the GGUF model's by up to {diff}")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{gguf_path.name} carries no chat template")
        out_dir.mkdir(parents=True, exist_ok=True)
        rebuilt.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    unique = {id(p): p.numel() for p in rebuilt.parameters()}
    return {
        "architecture": type(rebuilt).__name__,
        "parameters": sum(unique.values()),
        "dtype": "float32",
        "chat_template": True,
        "max_abs_logit_diff": diff,
    }

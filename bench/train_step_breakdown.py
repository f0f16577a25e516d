"""Where the training step's time goes: TRL's SFTTrainer against ftbot on the very same packed sequences.

`train_throughput.py` times whole runs; this script takes them apart. In one process, on one torch
thread, it runs the forward and backward pass of the same training steps (the benchmark's data, packed
best-fit into rows of 256 tokens, 6 rows a step) four ways and reports real tokens per CPU-second:

* ``trl_padding_free_row`` - ``SFTTrainer.compute_loss`` on what TRL's padding-free collator makes of
  the step: its sequences concatenated into one row, per-sequence position ids, no attention mask
  (transformers infers the block-diagonal mask from the position ids);
* ``trl_rows_of_256`` - the same ``compute_loss`` and model on the same sequences laid out as ftbot lays
  them out: 6 rows of 256 tokens, per-sequence position ids, padded tails;
* ``ftbot`` - ``runner.ml.loop.target_loss_sum`` on those rows, LoRA through ``runner.ml.fastlora``;
* ``ftbot_peft_forward`` - the same without ``runner.ml.fastlora`` (PEFT's own LoRA forward).

The ways alternate within each repeat (order reversed every other repeat) so a drifting machine load
hits all of them alike; the median of ``--repeats`` counts. No optimizer step, no data loading.

    .venv/bin/python bench/train_step_breakdown.py            # about 1.5 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import train_throughput as tt  # noqa: E402

ROWS_PER_STEP = 6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8, help="training steps per way and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    # One thread: the figures compare per-token work, and on a shared CPU extra OpenMP threads spin-wait.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from runner.core.trainconfig import TrainConfig
    from runner.ml.loop import target_loss_sum
    from runner.ml.model import prepare_model
    from runner.ml.packing import collate_rows, encode_chat, pack_best_fit

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ftbot-breakdown-") as tmp:
        workdir = Path(tmp)
        tt.prepare(workdir, 352, 64)
        data = json.loads((workdir / "data.json").read_text())
        bench_args = argparse.Namespace(
            workdir=workdir, seed=0, lora_r=16, steps=1, lr=1e-3, warmup_ratio=0.05, batch_size=11
        )

        # TRL's model as train_throughput's trl_packing builds it (bf16 LoRA weights, fused LM head).
        set_seed(0)
        tokenizer, base, _ = tt._quantized_base(bench_args)
        tokenizer.chat_template = tt.GENERATION_TEMPLATE
        config = SFTConfig(
            **tt._shared_training_args(bench_args, "breakdown", False),
            per_device_train_batch_size=ROWS_PER_STEP,
            assistant_only_loss=True,
            packing=True,
            max_length=tt.MAX_LEN,
            gradient_checkpointing=False,
        )
        trainer = SFTTrainer(
            model=base,
            args=config,
            train_dataset=Dataset.from_list(data["train"]),
            processing_class=tokenizer,
            peft_config=tt._lora_config(bench_args),
        )
        trl_model: Any = trainer.model
        trl_model.train()
        # ftbot's model as runner.ml.loop builds it, with and without fastlora.
        ftbot_config = TrainConfig(
            base_model=str(workdir / "base"),
            max_len=tt.MAX_LEN,
            batch_tokens=ROWS_PER_STEP * tt.MAX_LEN,
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            quantize=True,
            gradient_checkpointing=False,
            seed=0,
        )
        ftbot_models = {
            fast: prepare_model(ftbot_config, torch.device("cpu"), fast=fast) for fast in (True, False)
        }
        for model in ftbot_models.values():
            model.train()

        encoded = [encode_chat(tokenizer, e["messages"]) for e in data["train"]]
        rows = pack_best_fit([len(e.input_ids) for e in encoded], tt.MAX_LEN)
        random.Random(0).shuffle(rows)
        steps = [rows[i : i + ROWS_PER_STEP] for i in range(0, args.steps * ROWS_PER_STEP, ROWS_PER_STEP)]
        pad = int(tokenizer.pad_token_id)

        def trl_rows(group: list[list[int]]) -> dict[str, Any]:
            """TRL's inputs (labels unshifted, per-sequence position ids, no mask) in rows of 256."""
            shape = (len(group), tt.MAX_LEN)
            ids, labels = torch.full(shape, pad), torch.full(shape, -100)
            positions = torch.zeros(shape, dtype=torch.long)
            for r, row in enumerate(group):
                cursor = 0
                for index in row:
                    n = len(encoded[index].input_ids)
                    ids[r, cursor : cursor + n] = torch.tensor(encoded[index].input_ids)
                    labels[r, cursor : cursor + n] = torch.tensor(encoded[index].labels)
                    positions[r, cursor : cursor + n] = torch.arange(n)
                    cursor += n
                positions[r, cursor:] = torch.arange(tt.MAX_LEN - cursor)
            return {"input_ids": ids, "labels": labels, "position_ids": positions}

        def trl_row(group: list[list[int]]) -> dict[str, Any]:
            """What TRL's padding-free collator makes of the step's sequences."""
            sequences = [i for row in group for i in row]
            return dict(
                trainer.data_collator(
                    [{"input_ids": encoded[i].input_ids, "labels": encoded[i].labels} for i in sequences]
                )
            )

        def trl_step(inputs: dict[str, Any]) -> None:
            trainer.compute_loss(trl_model, dict(inputs)).backward()
            trl_model.zero_grad(set_to_none=True)

        def ftbot_step(model: Any) -> Any:
            def step(batch: Any) -> None:
                loss, count = target_loss_sum(model, batch)
                (loss / count).backward()
                model.zero_grad(set_to_none=True)

            return step

        packed = [collate_rows(encoded, group, tt.MAX_LEN, pad) for group in steps]
        ways: dict[str, tuple[Any, list[Any]]] = {
            "trl_padding_free_row": (trl_step, [trl_row(g) for g in steps]),
            "trl_rows_of_256": (trl_step, [trl_rows(g) for g in steps]),
            "ftbot": (ftbot_step(ftbot_models[True]), packed),
            "ftbot_peft_forward": (ftbot_step(ftbot_models[False]), packed),
        }
        real = sum(batch.real_tokens for batch in packed)
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        for repeat in range(args.repeats):
            order = list(ways) if repeat % 2 == 0 else list(ways)[::-1]
            for name in order:
                step, batches = ways[name]
                step(batches[0])  # warm-up, untimed
                began = time.process_time()
                for batch in batches:
                    step(batch)
                cpu[name].append(time.process_time() - began)

    print(
        f"{args.steps} steps of {ROWS_PER_STEP} rows of {tt.MAX_LEN}: {real} real tokens; forward + backward"
    )
    results = {}
    for name, seconds in cpu.items():
        rate = real / statistics.median(seconds)
        results[name] = {"tokens_per_cpu_s": rate, "each_repeat": [real / s for s in seconds]}
        runs = ", ".join(f"{real / s:.0f}" for s in seconds)
        print(f"  {name}: {rate:.0f} real tokens per CPU-s (repeats: {runs})")
    if args.json:
        args.json.write_text(json.dumps({"real_tokens": real, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

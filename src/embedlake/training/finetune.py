"""Fine-tune a sentence-transformers model with MultipleNegativesRankingLoss (in-batch negatives),
with the library's trainer, deterministic with a seed, on the CPU here and a GPU where present."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedlake.encoders.hub import offline
from embedlake.training.pairs import Pairs

log = logging.getLogger(__name__)


def finetune(
    base: Path,
    pairs: Pairs,
    out: Path,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    seed: int = 0,
    max_seq_length: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    offline()
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, TrainerCallback
    from transformers.utils import logging as transformers_logging

    from embedlake.encoders.sentence_transformers import pick_device

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    set_seed(seed)
    device = pick_device(device)
    model = SentenceTransformer(str(base), device=device, local_files_only=True)
    model.max_seq_length = max_seq_length
    data = Dataset.from_dict({"anchor": pairs.anchors, "positive": pairs.positives})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "_checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,  # a float is a share of the steps (Transformers 5)
        seed=seed,
        data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        use_cpu=device == "cpu",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    # the trainer prints its metrics to stdout (a library must not: a `--json` caller parses it);
    # they go to the log instead
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_log_metrics(TrainerCallback))
    result = trainer.train()
    model.save(str(out / "model"))
    log.info("fine-tuned on %d pairs: loss %.4f", len(pairs), result.training_loss)
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "max_seq_length": max_seq_length,
        "device": device,
        "training_loss": result.training_loss,
        "steps": result.global_step,
    }


def _log_metrics(base: Any) -> Any:
    """A trainer callback (of transformers' ``TrainerCallback``, imported lazily) that logs the
    metrics the trainer would print."""

    class LogMetrics(base):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            log.info("training: %s", logs)

    return LogMetrics()

"""Fine-tune a sentence-transformers model with the library's trainer: in-batch negatives plus the
mined hard negatives (``training.negatives``), one of three losses, evaluation on the dev queries
after every epoch and the best epoch kept. Deterministic with a seed; the CPU here, a GPU where
present.

Losses (``[training] loss``):
- ``mnrl``: MultipleNegativesRankingLoss, every other text in the batch and the pair's hard
  negatives as negatives;
- ``cached_mnrl``: the same with GradCache, so a large batch (more negatives) fits in memory;
- ``gist``: GISTEmbedLoss with the frozen starting model as guide, which drops in-batch negatives
  the guide scores above the positive (false negatives among the batch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from embedlake.encoders.hub import offline
from embedlake.ingest.datasets import Dataset
from embedlake.training.pairs import Pairs

log = logging.getLogger(__name__)

Loss = Literal["mnrl", "cached_mnrl", "gist"]
DEV_METRIC = "ndcg@10"


@dataclass(frozen=True)
class Recipe:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5  # the setting's default: config/sections.py
    loss: Loss = "mnrl"
    seed: int = 0


@dataclass(frozen=True)
class DevSet:
    """Queries that choose the epoch: their judgments and the documents to rank (bounded)."""

    dataset: Dataset
    corpus: dict[str, str]


def finetune(
    base: Path,
    pairs: Pairs,
    out: Path,
    *,
    recipe: Recipe = Recipe(),
    negatives: list[list[str]] | None = None,
    dev: DevSet | None = None,
    max_seq_length: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    offline()
    from datasets import Dataset as HfDataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, TrainerCallback
    from transformers.utils import logging as transformers_logging

    from embedlake.encoders.sentence_transformers import pick_device

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    set_seed(recipe.seed)
    device = pick_device(device)
    model = SentenceTransformer(str(base), device=device, local_files_only=True)
    model.max_seq_length = max_seq_length
    columns: dict[str, list[str]] = {"anchor": pairs.anchors, "positive": pairs.positives}
    for n in range(len(negatives[0]) if negatives else 0):
        assert negatives is not None
        columns[f"negative_{n + 1}"] = [row[n] for row in negatives]
    evaluator = None
    if dev is not None:
        evaluator = InformationRetrievalEvaluator(
            queries=dict[str, Any](dev.dataset.queries),
            corpus=dict[str, Any](dev.corpus),
            relevant_docs={
                q: {d for d, g in rel.items() if g > 0 and d in dev.corpus}
                for q, rel in dev.dataset.qrels.items()
            },
            name="dev",
            write_csv=False,
            batch_size=32,
        )
    metric = "eval_dev_cosine_ndcg@10"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "_checkpoints"),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        warmup_steps=0.1,  # a float is a share of the steps (Transformers 5)
        seed=recipe.seed,
        data_seed=recipe.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        # with dev queries: evaluate and checkpoint each epoch, and end on the best one
        eval_strategy="epoch" if evaluator else "no",
        save_strategy="epoch" if evaluator else "no",
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model=metric if evaluator else None,
        greater_is_better=True,
        save_total_limit=2 if evaluator else None,  # the best and the latest
        logging_steps=50,
        report_to="none",
        use_cpu=device == "cpu",
        disable_tqdm=True,
    )
    dev_scores: list[float] = []
    before = None
    if evaluator is not None:
        before = float(evaluator(model)[f"dev_cosine_{DEV_METRIC}"])
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=HfDataset.from_dict(columns),
        loss=make_loss(recipe, model, base, device),
        evaluator=evaluator,
    )
    # the trainer prints its metrics to stdout (a library must not: a `--json` caller parses it);
    # they go to the log instead, and the dev scores are collected per epoch
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_log_metrics(TrainerCallback, metric, dev_scores))
    result = trainer.train()
    model.save(str(out / "model"))
    best = max(range(len(dev_scores)), key=dev_scores.__getitem__) if dev_scores else None
    log.info(
        "fine-tuned on %d pairs: loss %.4f, dev %s", len(pairs), result.training_loss, dev_scores
    )
    return {
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "loss": recipe.loss,
        "hard_negatives": len(negatives[0]) if negatives else 0,
        "seed": recipe.seed,
        "max_seq_length": max_seq_length,
        "device": device,
        "training_loss": result.training_loss,
        "steps": result.global_step,
        # dev nDCG@10 before training and after each epoch; the model kept is the best epoch's
        "dev": None
        if before is None
        else {
            "queries": len(dev.dataset.queries) if dev else 0,
            "corpus": len(dev.corpus) if dev else 0,
            DEV_METRIC + "_before": before,
            DEV_METRIC + "_per_epoch": dev_scores,
            "best_epoch": None if best is None else best + 1,
        },
    }


def make_loss(recipe: Recipe, model: Any, base: Path, device: str) -> Any:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    if recipe.loss == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=16)
    if recipe.loss == "gist":
        guide = SentenceTransformer(str(base), device=device, local_files_only=True)
        guide.max_seq_length = model.max_seq_length
        return losses.GISTEmbedLoss(model, guide)
    return losses.MultipleNegativesRankingLoss(model)


def _log_metrics(base: Any, metric: str, dev_scores: list[float]) -> Any:
    """A trainer callback (of transformers' ``TrainerCallback``, imported lazily) that logs the
    metrics the trainer would print, and keeps each epoch's dev score."""

    class LogMetrics(base):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            log.info("training: %s", logs)

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **_: Any
        ) -> None:
            if metrics and metric in metrics:
                dev_scores.append(float(metrics[metric]))

    return LogMetrics()

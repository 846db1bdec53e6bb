"""The emotion rules' steps (called by workflow/scripts), one function per rule of workflow/rules/emotion.smk,
named as the rule."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import section
from ..io import iter_jsonl, write_json, write_jsonl
from ..train import multi_process
from .annotate import AnnotationOptions

if TYPE_CHECKING:
    from ..models.toy import ToyModelSpec  # imports torch: only where a toy model is built
    from ..train import TrainSettings
    from .classifier import ClassifierSettings

log = logging.getLogger(__name__)


def toy_emotion_lm(dialogs, *, config_out, spec: ToyModelSpec | dict, seed: int) -> None:
    """The toy run's base for the emotion classifier: a tiny GPT-2 on the raw dialogue texts (models.toy)."""
    from ..models.toy import ToyModelSpec, build_toy_gpt2
    from .annotate import clean_text

    spec = section(ToyModelSpec, spec, "toy.models")
    texts = [clean_text(m.get("text", "")) for _, d in iter_jsonl(dialogs, expected="a ReDial conversation object")
             for m in d.get("messages", [])]
    result = build_toy_gpt2([t for t in texts if t], Path(config_out).parent, vocab_size=spec.vocab_size,
                            hidden=spec.hidden, n_layer=spec.n_layer, n_head=spec.n_head, lm_steps=spec.lm_steps,
                            seed=seed)
    log.info("toy emotion LM: %s", result)


def emotion_annotate(dialogs, *, annotations_out, summary_out, cache_dir,
                     options: AnnotationOptions | dict) -> None:
    """LLM annotation of a seeded sample of seeker utterances (paper App. A.1), answers cached on disk so a
    killed job resumes; parse failures and unmapped words are counted in the summary, never guessed. A
    request that fails after the backend's retries fails the job with the counts and writes nothing
    (ecrflow.llm.stage): a failure is never a label, and a rerun sends only the missing requests."""
    from ..llm import backend_from_config
    from ..llm.cache import RequestCache
    from ..llm.stage import ask_all
    from .annotate import answer_constraint, parse_answer, request, sample, seeker_utterances, summarise
    from .mapping import load_mapping

    opts = section(AnnotationOptions, options, "emotion_labels")
    rows = sample(seeker_utterances(dialogs, max_history=opts.max_history), opts.utterances, opts.seed)
    table = load_mapping()
    constraint = answer_constraint(list(table), constrained=opts.constrained)
    backend = backend_from_config(opts.llm, opts.batch_size)

    def parse(i, attempt, text):
        words = parse_answer(text)
        if words is None:
            raise ValueError("not one or two emotion words")
        return words

    with RequestCache(cache_dir) as cache:
        answers = ask_all(backend, cache, len(rows), lambda i, k: request(rows[i], constraint, attempt=k), parse,
                          max_attempts=opts.max_attempts, batch_size=opts.batch_size, stage="emotion_annotate")
    out, summary = summarise(rows, answers, table)
    summary["llm"] = backend.model_id
    summary["reasked"] = sum(1 for a in answers if a.attempt > 1)
    if not summary["labelled"]:
        raise ValueError(f"no annotator answer gave a known emotion word ({json.dumps(summary)})")
    write_jsonl(annotations_out, out)
    write_json(summary_out, summary)
    log.info("emotion annotation: %s", json.dumps(summary))


def emotion_label(dialog_file, model_dir, *, out, stats_out) -> None:
    """Every message of one split's dialogues labelled by the trained classifier, in the ECR format
    (:func:`ecrflow.emotion.classifier.label_dialogs`)."""
    from .classifier import label_dialogs

    label_dialogs(dialog_file, model_dir, out=out, stats_out=stats_out)


@multi_process
def emotion_classifier(annotations, *, out_dir, metrics_out, work_dir, model_name: str,
                       section: ClassifierSettings | dict, train_cfg: TrainSettings | dict) -> None:
    """The focal-loss emotion classifier fine-tuned on the annotations, Recall@2 on held-out dialogues
    (:func:`ecrflow.emotion.classifier.train_classifier`)."""
    from ..config import section as typed
    from ..train import TrainSettings
    from .classifier import ClassifierSettings, train_classifier

    train_classifier(annotations, out_dir=out_dir, metrics_out=metrics_out, work_dir=work_dir, model_name=model_name,
                     section=typed(ClassifierSettings, section, "classifier"),
                     train_cfg=typed(TrainSettings, train_cfg, "train"))

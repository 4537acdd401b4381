"""Export one head as a plain transformers AutoModelFor{Sequence,Token}Classification checkpoint.

The head layout mirrors BertFor*Classification (a pooler on [CLS] + classifier, or a per-token
classifier), so the exported model needs no mtnlp to load and gives the same logits.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

from .errors import UserError
from .modeling import MultiTaskModel


def export_head(model: MultiTaskModel, task: str):
    if task not in model.config.tasks:
        raise UserError(f"--task {task}: the model has no such task (it has: {', '.join(model.config.tasks)})")
    spec = model.config.tasks[task]
    config = AutoConfig.for_model(**{**model.config.encoder.to_dict(), "architectures": None})
    if spec["type"] == "regression":
        config.num_labels, config.problem_type = 1, "regression"
        config.id2label, config.label2id = {0: "score"}, {"score": 0}
    else:
        config.id2label = dict(enumerate(spec["labels"]))
        config.label2id = {label: i for i, label in enumerate(spec["labels"])}
        if spec["type"] == "classification":
            config.problem_type = "single_label_classification"
    auto = AutoModelForTokenClassification if spec["type"] == "tagging" else AutoModelForSequenceClassification
    exported = auto.from_config(config)
    prefix = exported.base_model_prefix
    state = {f"{prefix}.{k}": v for k, v in model.encoder_state(task).items()}  # adapter merged / layers in place
    head = model.heads[task]
    if spec["type"] != "tagging":
        state[f"{prefix}.pooler.dense.weight"] = head.pooler["dense"].weight
        state[f"{prefix}.pooler.dense.bias"] = head.pooler["dense"].bias
    state["classifier.weight"], state["classifier.bias"] = head.classifier.weight, head.classifier.bias
    expected = set(exported.state_dict())
    missing, extra = expected - set(state), set(state) - expected
    missing = {k for k in missing if not k.endswith("position_ids")}
    if missing or extra:
        raise UserError(f"cannot export a '{config.model_type}' encoder head as {type(exported).__name__}: "
                        f"its layout differs from BERT's (missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]})")
    exported.load_state_dict(state, strict=False)
    return exported.eval()

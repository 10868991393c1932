"""The `category` label values of `model_feature_category_total`: one vocabulary for the exporter that writes them
(`canary.drift.exporter`, in the model server) and the readers (`canary.drift.live` against a profile,
`canary.metrics.features` for a rollout's arms), kept apart from both so that the metrics layer need not import
the drift package, and the model server nothing but this.

Values the profile never saw count under OTHER; the empty category "" under EMPTY (Prometheus keeps no empty
label value); a category spelt like either, with only "_" before it, under its text with one "_" more
(decision 540). An exporter from before decision 540 gave "__other__" OTHER's label and "__empty__" EMPTY's:
`older_label` reads a label as that exporter would have written it (decision 558).
"""

from __future__ import annotations

OTHER = "__other__"
# the label value of the empty category "" (a CSV's empty field is a value, not a missing one, to pyarrow):
# Prometheus keeps no label whose value is empty, so `category=""` arrived without its category, was left
# out of every answer, and a feature 30% empty in training read 0% empty live: drift, for good
EMPTY = "__empty__"
_RESERVED = (OTHER, EMPTY)  # the labels above; a category spelt like one is escaped (`category_label`)


def category_label(text: str) -> str:
    """The `category` label value of a category's text: EMPTY for "" (Prometheus drops an empty label value), one
    "_" more before a text spelt like OTHER or EMPTY with only "_" before it ("__other__" is "___other__",
    "___other__" is "____other__"), the text itself for any other. One label per text and none of them OTHER:
    a training category "__other__" counted with the values the profile never saw, and "__empty__" with ""
    (decision 540). `category_of_label` reads it back."""
    if not text:
        return EMPTY
    if text.endswith(_RESERVED) and not text[:-9].strip("_"):
        return "_" + text
    return text


def category_of_label(label: str) -> str:
    """The category's text of a `category` label (`category_label`'s inverse); OTHER stays OTHER (the values
    the profile never saw: no category's label)."""
    if label == EMPTY:
        return ""
    if label.endswith(_RESERVED) and len(label) > 9 and not label[:-9].strip("_"):
        return label[1:]
    return label


def older_label(label: str) -> str:
    """The label an exporter from before decision 540 gave the category of `label` (its text, or EMPTY for ""):
    "___other__" is OTHER, "___empty__" EMPTY, every other label itself. A rollout's two arms are compared by
    these: a stable whose model server runs an older canary counts a training "__other__" with OTHER, the canary's
    newer one apart, and read as they are the two arms differed in both cells, a drift, and a rollback, of the
    upgrade itself (decision 558)."""
    return category_of_label(label) or EMPTY

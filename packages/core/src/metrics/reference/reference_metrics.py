"""Reference values for packages/core/src/metrics, computed by the packages they must equal.

Reads a JSON corpus on stdin, prints JSON on stdout. Run by metrics.reference.test.ts with the
repository's venv (sacrebleu, rouge-score, nltk, scikit-learn pinned in requirements-dev.txt).
"""

import collections
import json
import re
import string
import sys

import sacrebleu
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sklearn.metrics import f1_score, precision_score, recall_score


# --- the official SQuAD 2.0 evaluation script's functions, verbatim ---
def normalize_answer(s):
    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


# --- end of the SQuAD functions ---

ROUGE_TYPES = ["rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum"]


def bleu_dict(score):
    return {
        "score": score.score,
        "counts": list(score.counts),
        "totals": list(score.totals),
        "precisions": list(score.precisions),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
    }


def reference_streams(refs):
    """sacrebleu wants reference streams; pad items with fewer references with None."""
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


def rouge_dict(scores):
    return {k: {"precision": v.precision, "recall": v.recall, "fmeasure": v.fmeasure} for k, v in scores.items()}


def per_item(item, scorers):
    hyp, refs = item["hyp"], item["refs"]
    return {
        "sentence_bleu": bleu_dict(sacrebleu.sentence_bleu(hyp, refs)),
        "sentence_chrf": sacrebleu.sentence_chrf(hyp, refs).score,
        "sentence_chrfpp": sacrebleu.sentence_chrf(hyp, refs, word_order=2).score,
        "rouge": rouge_dict(scorers[False].score_multi(refs, hyp)),
        "rouge_stem": rouge_dict(scorers[True].score_multi(refs, hyp)),
        "rouge_single": rouge_dict(scorers[False].score(refs[0], hyp)),
        "exact": max(compute_exact(r, hyp) for r in refs),
        "f1": max(compute_f1(r, hyp) for r in refs),
        "tokenize_13a": BLEU(tokenize="13a").tokenizer(hyp.rstrip()),
    }


def corpus(items):
    hyps = [i["hyp"] for i in items]
    streams = reference_streams([i["refs"] for i in items])
    out = {"bleu": bleu_dict(sacrebleu.corpus_bleu(hyps, streams))}
    variants = {
        "bleu_lowercase": dict(lowercase=True),
        "bleu_none_tok": dict(tokenize="none"),
        "bleu_floor": dict(smooth_method="floor"),
        "bleu_addk": dict(smooth_method="add-k"),
        "bleu_nosmooth": dict(smooth_method="none"),
        "bleu_effective": dict(effective_order=True),
    }
    for name, kwargs in variants.items():
        out[name] = bleu_dict(BLEU(**kwargs).corpus_score(hyps, streams))
    out["chrf"] = sacrebleu.corpus_chrf(hyps, streams).score
    out["chrfpp"] = sacrebleu.corpus_chrf(hyps, streams, word_order=2).score
    out["chrf_lowercase"] = CHRF(lowercase=True).corpus_score(hyps, streams).score
    out["chrf_whitespace"] = CHRF(whitespace=True).corpus_score(hyps, streams).score
    out["chrf_eps"] = CHRF(eps_smoothing=True).corpus_score(hyps, streams).score
    return out


def main():
    data = json.load(sys.stdin)
    scorers = {s: rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=s) for s in (False, True)}
    stemmer = PorterStemmer()
    binary = [
        {
            "precision": precision_score(c["actual"], c["predicted"], zero_division=0),
            "recall": recall_score(c["actual"], c["predicted"], zero_division=0),
            "f1": f1_score(c["actual"], c["predicted"], zero_division=0),
        }
        for c in data["binary"]
    ]
    json.dump(
        {
            "items": [per_item(i, scorers) for i in data["items"]],
            "corpus": corpus(data["items"]),
            "stems": [stemmer.stem(w) for w in data["words"]],
            "binary": binary,
            "versions": {"sacrebleu": sacrebleu.__version__},
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()

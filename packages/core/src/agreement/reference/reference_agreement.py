"""Reference agreement numbers for the cross-check test (agreement.reference.test.ts).

Reads {"cases": [...]} as JSON on stdin and writes {"results": [...], "statsmodels": bool} to
stdout, one result per case, computed by the reference implementations:
  alpha:  krippendorff.alpha (the `krippendorff` package)
  cohen:  sklearn.metrics.cohen_kappa_score
  fleiss: statsmodels.stats.inter_rater.fleiss_kappa, only when statsmodels is installed
null in the data means a missing value. NaN results are written as null.
"""

import json
import math
import sys

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score

try:
    from statsmodels.stats.inter_rater import fleiss_kappa
except ImportError:
    fleiss_kappa = None


def reliability_array(data):
    strings = any(isinstance(v, str) for row in data for v in row)
    rows = [[np.nan if v is None else v for v in row] for row in data]
    # Strings: numpy turns NaN into the string "nan", which the package reads as missing.
    return np.asarray(rows) if strings else np.asarray(rows, dtype=float)


def run(case):
    kind = case["type"]
    if kind == "alpha":
        kwargs = {"level_of_measurement": case["level"]}
        if case.get("valueDomain") is not None:
            kwargs["value_domain"] = case["valueDomain"]
        if case.get("valueCounts") is not None:
            return krippendorff.alpha(value_counts=np.asarray(case["valueCounts"]), **kwargs)
        return krippendorff.alpha(reliability_data=reliability_array(case["data"]), **kwargs)
    if kind == "cohen":
        kwargs = {"weights": case.get("weights")}
        if case.get("labels") is not None:
            kwargs["labels"] = case["labels"]
        if case.get("sampleWeight") is not None:
            kwargs["sample_weight"] = case["sampleWeight"]
        return cohen_kappa_score(case["a"], case["b"], **kwargs)
    if kind == "fleiss":
        return None if fleiss_kappa is None else fleiss_kappa(np.asarray(case["table"], dtype=float))
    raise ValueError(f"unknown case type {kind}")


def main():
    cases = json.load(sys.stdin)["cases"]
    results = []
    for case in cases:
        value = run(case)
        results.append(None if value is None or math.isnan(float(value)) else float(value))
    json.dump({"results": results, "statsmodels": fleiss_kappa is not None}, sys.stdout)


if __name__ == "__main__":
    main()

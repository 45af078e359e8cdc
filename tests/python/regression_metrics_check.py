"""Holds inferlog's regression performance reports to scikit-learn's metrics.

Usage: regression_metrics_check.py FILE, where FILE is JSON:
{"pairs": [[answer, truth], ...], "reports": {"<name>": <the /monitor/performance body>, ...}}.
Every report must give scikit-learn's mean_absolute_error, root of mean_squared_error and
r2_score on the pairs within 1e-9 relative, the mean error (answer - truth) likewise, and
numpy's percentiles of the absolute error: exactly (1e-9) from rows, within 4% from rollups.
"""

import json
import sys

import numpy as np
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score


def close(got, want, rel, what):
    if got is None or abs(got - want) > rel * max(abs(want), 1e-300):
        raise SystemExit(f"{what}: inferlog {got!r}, scikit-learn/numpy {want!r} (relative {rel})")


def main(path):
    with open(path) as f:
        data = json.load(f)
    pairs = np.array(data["pairs"], dtype=float)
    y_pred, y_true = pairs[:, 0], pairs[:, 1]
    want = {
        "mae": mean_absolute_error(y_true, y_pred),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": r2_score(y_true, y_pred),
        "mean_error": float(np.mean(y_pred - y_true)),
    }
    abs_err = np.abs(y_pred - y_true)
    for name, report in data["reports"].items():
        if report["labelled"] != len(pairs):
            raise SystemExit(f"{name}: labelled {report['labelled']}, pairs {len(pairs)}")
        for metric, value in want.items():
            close(report[metric], value, 1e-9, f"{name} {metric}")
        exact = report["source"] == "rows"
        for key, q in [("p50", 50), ("p90", 90), ("p99", 99)]:
            got = report["abs_error_percentiles"][key]
            if exact:
                close(got, float(np.percentile(abs_err, q)), 1e-9, f"{name} {key}")
            else:
                # The histogram's bucket of the nearest-rank error, read within 4%.
                rank = int(np.ceil(q / 100 * len(abs_err)))
                close(got, float(np.sort(abs_err)[rank - 1]), 0.04 + 1e-9, f"{name} {key}")
        print(f"{name} ({report['source']}): {', '.join(f'{k} {report[k]:.6g}' for k in want)}")
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])

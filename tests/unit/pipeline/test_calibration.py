"""The threshold rules (calibration.py) and the rates they give (evaluation.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import patchcore_core
from patchcore_core import PatchCore, PatchCoreConfig
from patchcore_core.cli.main import build_parser
from patchcore_core.evaluation.category import threshold_rates
from patchcore_core.pipeline.calibration import fitted_threshold, threshold_from_scores


def test_largest_score_rule_and_its_fallbacks():
    assert threshold_from_scores([]) is None
    assert threshold_from_scores([1.0, 3.0, 2.0]) == 3.0
    assert threshold_from_scores([1.0, 3.0], 0.05) == 3.0  # too few scores to fit a spread


def test_fitted_threshold_never_below_the_largest_held_out_score():
    scores = [1.0, 1.0, 1.0, 1.0, 5.0]
    assert threshold_from_scores(scores, 0.4) >= 5.0
    # a looser aim gives a lower (or equal) threshold
    rng = np.random.default_rng(0)
    s = list(np.exp(rng.normal(0, 0.2, 20)))
    assert threshold_from_scores(s, 0.01) > threshold_from_scores(s, 0.1) >= max(s)


@pytest.mark.parametrize("n", [5, 10, 40])
def test_fitted_threshold_meets_its_false_alarm_aim_on_average(n):
    """Under the stated assumption (log-normal good scores), a new good image
    exceeds the threshold fitted to n scores with probability about ``a`` on
    average over fits: the prediction interval accounts for estimating from
    few scores. A plain quantile of the fit would miss the aim by far at n=5."""
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    aim, mu, sd = 0.05, 0.3, 0.25
    rates, plain = [], []
    for _ in range(3000):
        s = np.exp(rng.normal(mu, sd, n))
        thr = fitted_threshold(list(s), aim)
        rates.append(norm.sf((math.log(thr) - mu) / sd))  # exact exceedance of that threshold
        logs = np.log(s)
        plain.append(norm.sf((logs.mean() + norm.ppf(1 - aim) * logs.std(ddof=1) - mu) / sd))
    assert np.mean(rates) == pytest.approx(aim, abs=0.006)
    if n == 5:
        assert np.mean(plain) > 1.4 * aim


def test_fitted_threshold_refuses_bad_input():
    with pytest.raises(ValueError, match="false_alarm_rate"):
        fitted_threshold([1.0, 2.0, 3.0], 0)
    with pytest.raises(ValueError, match="at least 3"):
        fitted_threshold([1.0, 2.0], 0.05)


def test_config_range_and_cli_option():
    with pytest.raises(ValueError, match="false_alarm_rate"):
        PatchCoreConfig(false_alarm_rate=1.0)
    args = build_parser().parse_args(["evaluate", "--false-alarm-rate", "0.01"])
    assert args.false_alarm_rate == 0.01


def test_threshold_rates():
    labels = [0, 0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.9, 0.3, 0.8, 0.4]
    assert threshold_rates(labels, scores, 0.5) == (0.25, 0.5)
    far, miss = threshold_rates(labels, scores, None)
    assert math.isnan(far) and math.isnan(miss)
    far, miss = threshold_rates([1, 1], [0.1, 0.9], 0.5)
    assert math.isnan(far) and miss == 0.5


def test_rule_is_saved_and_old_files_keep_theirs(brick, tmp_path):
    model = PatchCore(device="cpu", false_alarm_rate=0.01, coreset_ratio=0.05).fit(brick.train[:12],
                                                                                  progress=False)
    assert model.threshold == threshold_from_scores(model.calibration_scores, 0.01)
    path = patchcore_core.save(model, tmp_path / "m.safetensors")
    again = patchcore_core.load(path, device="cpu")
    assert again.config.false_alarm_rate == 0.01 and again.threshold == model.threshold
    # a file written before the setting existed: its threshold came from the largest score
    tensors, meta = model.state_dict()
    del meta["config"]["false_alarm_rate"]
    meta["threshold"] = max(meta["calibration_scores"])
    old = PatchCore.from_state_dict(tensors, meta, device="cpu")
    assert old.config.false_alarm_rate == 0.0 and old.threshold == max(model.calibration_scores)


def test_evaluate_reports_the_rates(builtin_root, tmp_path):
    import json

    from patchcore_core.cli.main import main

    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(builtin_root), "--category", "brick", "--quiet",
                 "--coreset-ratio", "0.05", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["brick"]
    assert 0 <= row["false_alarm_rate"] <= 1 and 0 <= row["miss_rate"] <= 1
    assert row["target_false_alarm_rate"] == 0  # the default: the largest held-out score

"""Pearson and MMRV against hand-computed values and SIMPLER's definition."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from actwm import cli as actwm_cli
from actwm.eval.policy import mmrv, pearson, rank_violations


def main(argv: list[str]) -> int:
    """`actwm policy-eval ARGV` through the dispatcher's error boundary (bad input: one stderr line, exit 2)."""
    return actwm_cli.main(["policy-eval", *argv])


def simpler_mmrv(sim, real):
    """The loop of SIMPLER's `mean_maximum_rank_violation`, written out for comparison."""
    worst = []
    for i in range(len(sim)):
        v = 0.0
        for j in range(len(sim)):
            if (sim[i] > sim[j]) != (real[i] > real[j]):
                v = max(v, abs(real[i] - real[j]))
        worst.append(v)
    return sum(worst) / len(worst)


def test_pearson_by_hand():
    # pred deviations (-.4, 0, .4); real mean .4667, deviations (-.2667, -.0667, .3333)
    # cov = .24, var_p = .32, var_r = .18667 -> r = .24 / sqrt(.32 * .18667)
    expected = 0.24 / math.sqrt(0.32 * (0.08 / 9 * 21))
    assert pearson([0.1, 0.5, 0.9], [0.2, 0.4, 0.8]) == pytest.approx(expected, abs=1e-12)
    assert pearson([0.1, 0.5, 0.9], [0.2, 0.4, 0.8]) == pytest.approx(0.981981, abs=1e-6)
    assert pearson([0.9, 0.5, 0.1], [0.2, 0.4, 0.8]) == pytest.approx(-0.981981, abs=1e-6)
    assert pearson([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all real success rates are equal"):
        pearson([0.1, 0.2], [0.5, 0.5])
    with pytest.raises(ValueError, match="same policies"):
        pearson([0.1, 0.2], [0.5, 0.5, 0.1])
    with pytest.raises(ValueError, match="at least 2"):
        pearson([0.1], [0.5])


def test_mmrv_by_hand():
    assert mmrv([0.1, 0.5, 0.9], [0.2, 0.4, 0.8]) == 0.0  # same ranking
    # reversed ranking: worst violations per policy 0.6, 0.4, 0.6
    assert mmrv([0.9, 0.5, 0.1], [0.2, 0.4, 0.8]) == pytest.approx((0.6 + 0.4 + 0.6) / 3)
    # one swapped pair (policies 1 and 2, real gap 0.1): both get 0.1, policy 0 gets 0
    assert mmrv([0.1, 0.6, 0.5], [0.2, 0.4, 0.5]) == pytest.approx(0.2 / 3)
    # a tie in pred but not in real: only the policy ahead in reality records the violation (strict >)
    assert mmrv([0.5, 0.5], [0.2, 0.4]) == pytest.approx(0.1)
    rv = rank_violations([0.5, 0.5], [0.2, 0.4])
    assert rv.tolist() == [[0.0, 0.0], [pytest.approx(0.2), 0.0]]


def test_mmrv_matches_simpler_definition_on_random_rates():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 9))
        sim = np.round(rng.random(n), 1)  # rounding makes ties common
        real = np.round(rng.random(n), 1)
        assert mmrv(sim, real) == pytest.approx(simpler_mmrv(sim, real), abs=1e-12)


def test_cli_list_and_csv(tmp_path, capsys):
    out = tmp_path / "pe.json"
    assert main(["--pred", "0.1,0.5,0.9", "--real", "0.2,0.4,0.8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pearson r: 0.9820" in printed and "MMRV:      0.0000" in printed
    res = json.loads(out.read_text())
    assert res["pearson"] == pytest.approx(0.981981, abs=1e-6) and res["mmrv"] == 0.0 and res["num_policies"] == 3
    table = tmp_path / "rates.csv"
    table.write_text("policy,pred,real\nrt1,0.9,0.2\nocto,0.5,0.4\nvla,0.1,0.8\n")
    assert main(["--csv", str(table), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["policies"] == ["rt1", "octo", "vla"] and res["mmrv"] == pytest.approx(1.6 / 3)


def test_cli_errors(tmp_path, capsys):
    assert main(["--pred", "0.1,0.5", "--real", "0.2"]) == 2
    assert "same policies" in capsys.readouterr().err
    assert main(["--pred", "0.1,x", "--real", "0.2,0.3"]) == 2
    assert "--pred: expected comma-separated numbers" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\na,1\n")
    assert main(["--csv", str(bad)]) == 2
    assert "needs columns 'pred' (or 'sim') and 'real'" in capsys.readouterr().err
    assert main(["--csv", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "pred, message",
    [("0.1,5", "--pred: success rate #2 is 5.0"), ("-3,0.5", "--pred: success rate #1 is -3.0"), ("0.1,nan", "nan")],
)
def test_cli_rejects_rates_outside_0_1(tmp_path, capsys, pred, message):
    out = tmp_path / "pe.json"
    assert main([f"--pred={pred}", "--real", "0.2,0.4", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "[0, 1]" in err and not out.exists()
    table = tmp_path / "rates.csv"
    table.write_text("pred,real\n0.2,0.5\n0.4,1.5\n")
    assert main(["--csv", str(table)]) == 2
    assert "rates.csv, column real: success rate #2 is 1.5" in capsys.readouterr().err


def test_cli_unwritable_json_is_an_error_before_anything(tmp_path, capsys):
    (tmp_path / "dir.json").mkdir()
    assert main(["--pred", "0.1,0.5", "--real", "0.2,0.4", "--json", str(tmp_path / "dir.json")]) == 2
    captured = capsys.readouterr()
    assert "--json" in captured.err and "is a directory" in captured.err and "pearson" not in captured.out

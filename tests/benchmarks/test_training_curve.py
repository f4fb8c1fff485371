"""The training-curve benchmark: the log fit and its extrapolation, the table and the plot."""

from __future__ import annotations

import math

from benchmarks.training_curve import log_fit, main, reach


def test_log_fit_recovers_a_log_curve_and_extrapolates_it():
    points = [(t, 0.2 + 0.5 * math.log(t)) for t in (10, 20, 40, 80)]
    a, b = log_fit(points)
    assert math.isclose(a, 0.2, abs_tol=1e-9) and math.isclose(b, 0.5, abs_tol=1e-9)
    assert math.isclose(reach(1.7, (a, b)), math.exp(3.0), rel_tol=1e-9)
    assert reach(1.0, (0.0, -0.1)) == math.inf  # a falling curve never gets there


def test_table_and_plot_from_a_training_log(tmp_path, capsys):
    log = tmp_path / "run" / "log.csv"
    log.parent.mkdir()
    rows = ["step,minutes,loss,psnr_k16_snr10"] + [f"{s},{s / 100},0.01,{20 + 0.3 * math.log(s / 100):.4f}"
                                                  for s in (1000, 2000, 4000, 8000)]
    log.write_text("\n".join(rows + ["8100,81,0.01,"]) + "\n")  # a row without validation is skipped
    out = tmp_path / "curve.png"
    main([str(log), "--metric", "psnr_k16_snr10", "--gain", "0.9", "--out", str(out)])
    table = capsys.readouterr().out
    assert "| run | psnr_k16_snr10 | 20.69 | 21.31 (80) | +0.62 | 0.300 | 201 |" in table
    # the gain 0.3 ln(t / 10) reaches 0.9 dB at t = 10 e^3 = 201 minutes
    assert out.stat().st_size > 1000

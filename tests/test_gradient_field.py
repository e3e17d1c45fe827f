"""Tests for prefjax.analysis_tools.gradient_field and analysis/gradient_field.py.

Oracles: DPO's gradient in the probabilities, ∂L/∂x1 = −β σ(−βh)/x1 and ∂L/∂x2 = β σ(−βh)/x2, hence the
asymmetry |∂L/∂x2| / |∂L/∂x1| = x1/x2 of Feng et al. 2404.04626; IPO's gradient 2(h − 1/(2β))/x written out
in numpy float64.
"""

import os
import runpy
import sys

import numpy as np
import pytest

from prefjax.analysis_tools import gradient_field as gf
from prefjax.errors import PrefjaxError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("beta,ref_w,ref_l", [(1.0, 0.5, 0.5), (0.1, 0.2, 0.6)])
def test_dpo_gradient_field_and_ratio(x64, beta, ref_w, ref_l):
  x1, x2 = gf.probability_grid(9)
  g1, g2 = gf.loss_gradient_field("sigmoid", x1, x2, beta=beta, ref_chosen=ref_w, ref_rejected=ref_l)
  h = np.log(x1 / ref_w) - np.log(x2 / ref_l)
  weight = beta / (1 + np.exp(beta * h))  # β σ(−βh)
  np.testing.assert_allclose(g1, -weight / x1, rtol=1e-12)
  np.testing.assert_allclose(g2, weight / x2, rtol=1e-12)
  np.testing.assert_allclose(np.abs(g2) / np.abs(g1), gf.dpo_gradient_ratio(x1, x2), rtol=1e-12)
  np.testing.assert_allclose(gf.dpo_gradient_ratio(x1, x2), x1 / x2, rtol=1e-15)
  # The descent direction lowers π(y_l) and raises π(y_w); below the diagonal the fall is the faster.
  assert np.all(g1 < 0) and np.all(g2 > 0)
  below = x2 < x1
  assert np.all(np.abs(g2[below]) > np.abs(g1[below]))


def test_ipo_gradient_field(x64):
  x1, x2 = gf.probability_grid(7)
  g1, g2 = gf.loss_gradient_field("ipo", x1, x2, beta=0.5, ref_chosen=0.3, ref_rejected=0.4)
  h = np.log(x1 / 0.3) - np.log(x2 / 0.4)
  np.testing.assert_allclose(g1, 2 * (h - 1.0) / x1, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(g2, -2 * (h - 1.0) / x2, rtol=1e-10, atol=1e-12)


def test_bad_input_errors():
  with pytest.raises(PrefjaxError, match="probabilities"):
    gf.loss_gradient_field("sigmoid", np.array([0.0]), np.array([0.5]), beta=1.0)
  with pytest.raises(PrefjaxError, match="unknown pairwise objective"):
    gf.loss_gradient_field("dpoo", np.array([0.3]), np.array([0.5]), beta=1.0)
  with pytest.raises(PrefjaxError, match="same shape"):
    gf.loss_gradient_field("sigmoid", np.array([0.3]), np.array([0.5, 0.2]), beta=1.0)


def test_analysis_script_writes_png(tmp_path, monkeypatch, capsys):
  out = tmp_path / "field.png"
  monkeypatch.setattr(sys, "argv", ["gradient_field.py", f"--out={out}", "--objectives=sigmoid,ipo",
                                    "--num=7"])
  runpy.run_path(os.path.join(REPO, "analysis", "gradient_field.py"), run_name="__main__")
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  printed = capsys.readouterr().out
  deviation = float(printed.rsplit(":", 1)[1])
  assert deviation < 1e-5  # float32 autodiff against x1/x2

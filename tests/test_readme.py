"""The README's library snippets run as written (with small arrays where they use placeholder names)."""

import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_library_snippets_run():
  blocks = _python_blocks()
  assert len(blocks) == 2
  rng = np.random.default_rng(0)
  # The first snippet's inputs are the user's log-probs: four [B] arrays.
  namespace = {k: rng.normal(size=8).astype(np.float32) for k in (
      "policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")}
  exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["losses"].shape == (8,) and np.isfinite(float(namespace["loss"]))
  # The second runs 1 000 seeds x 3 betas x 18 000 steps as written; fewer steps keep the default tier fast
  # (the same call, the same shapes but the record axis).
  code = blocks[1].replace("num_steps=18_000", "num_steps=200").replace("181 records", "3 records")
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["metrics"].policy.shape == (3, 1000, 3, 1, 3)
  assert "num_steps=18_000" in blocks[1]  # the replacement above applied (the snippet has not changed)

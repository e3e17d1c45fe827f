r"""The one entry point of prefjax experiments.

  python -m experiments.main --config=experiments/configs/ipo_bandit.py[:quick] --workdir=runs/ipo_bandit \
      [--config.field=value ...] [--overwrite] [--verbosity=1]

The config file's `get_config(arg)` builds a locked ml_collections ConfigDict: overriding a field that does
not exist is an error naming the field (with the closest names); a value of the wrong kind (a word where the
config has numbers) is refused here, and the runner checks every value before it writes anything.
`config.experiment` selects the runner (`prefjax.runners`), which writes config.json, status.json,
metrics.jsonl, arrays.npz, summary.json and figures into the workdir under the workdir contract
(docs/workdir.md): a finished run of the same config is reported and not rerun, an interrupted one resumes,
a workdir holding another run is refused unless `--overwrite` is given.

Works from any directory once prefjax is installed (`pip install -e .` installs the `experiments` package
too); a relative `--config` path that does not exist where you are is also looked up from the repository
root. `--help` lists every config with its variants.

Exit status: 0 when the run finished (or had finished before); 2 on bad input (one line on stderr: the
field, file or line; `--verbosity=1` adds the traceback); 128 + the signal number (143 SIGTERM, 130 SIGINT)
when a signal stopped it, after saving what could be saved and printing the command that resumes it.

Library INFO logs (orbax logs every checkpoint operation) would bury the progress lines, so only warnings and
errors are logged unless `--verbosity=0` (or another level) is given.
"""

import ast
import difflib
import importlib.util
import os
import shlex
import sys
import traceback

if __package__ in (None, ""):  # `python experiments/main.py`: make the repository root importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from prefjax import preemption  # pylint: disable=g-import-not-at-top
from prefjax import runners  # pylint: disable=g-import-not-at-top
from prefjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
from prefjax.errors import PrefjaxError  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "experiments", "configs")
NOT_CONFIGS = ("__init__.py", "common.py")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the run's outputs.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace a run of another config (or a finished one) in the workdir.")


def list_configs():
  """[(name, variants, first docstring line)] for every config file in experiments/configs."""
  out = []
  for fname in sorted(os.listdir(CONFIG_DIR)):
    if not fname.endswith(".py") or fname in NOT_CONFIGS:
      continue
    with open(os.path.join(CONFIG_DIR, fname), encoding="utf-8") as f:
      tree = ast.parse(f.read())
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    variants = []
    for node in ast.walk(tree):  # common.parse_arg(arg, quick=False, paper=False) names the variants.
      if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "parse_arg":
        variants = [k.arg for k in node.keywords]
    out.append((fname[:-3], variants, doc[0] if doc else ""))
  return out


def usage():
  doc = __doc__.strip().splitlines()
  lines = [doc[0], "", *doc[2:4], "", "Configs (experiments/configs/NAME.py, variants after ':'):"]
  for name, variants, doc in list_configs():
    var = "".join(f" :{v}" for v in variants)
    lines.append(f"  {name}{var}\n      {doc}")
  lines += ["", "Flags:", "  --config=PATH[:VARIANT]  config file (required)",
            "  --workdir=DIR            folder for the run's record (required)",
            "  --config.FIELD=VALUE     override a config field (nested: --config.model.d_model=64)",
            "  --overwrite              replace another run's record in the workdir",
            "  --verbosity=N            library logs at level N; with N >= 1 errors show their traceback"]
  return "\n".join(lines)


def _argument(argv, name):
  """The value of `--name=value` / `--name value` in argv (the last one), or None."""
  value = None
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      value = a.split("=", 1)[1]
    elif a == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _resolve_config(argv):
  """Checks --config's path (exists, is a .py file; relative paths also tried from the repository root)."""
  spec = _argument(argv, "config")
  if spec is None:
    raise PrefjaxError("--config is required, e.g. --config=experiments/configs/ipo_bandit.py:quick "
                       "(--help lists the configs)")
  path, sep, variant = spec.partition(":")
  if not path:
    raise PrefjaxError("--config is empty: give a config file, e.g. experiments/configs/ipo_bandit.py")
  candidates = [path] + ([os.path.join(REPO_ROOT, path)] if not os.path.isabs(path) else [])
  found = next((p for p in candidates if os.path.isfile(p)), None)
  if found is None:
    where = next((p for p in candidates if os.path.exists(p)), None)
    if where is not None:
      raise PrefjaxError(f"--config={path} is a folder, not a config file: give one of its .py files "
                         f"(--help lists the configs)")
    near = difflib.get_close_matches(os.path.basename(path).removesuffix(".py"),
                                     [n for n, _, _ in list_configs()], n=3)
    hint = f"; did you mean {', '.join(f'experiments/configs/{n}.py' for n in near)}?" if near else ""
    raise PrefjaxError(f"--config={path}: no such file{hint} (--help lists the configs)")
  if not found.endswith(".py"):
    raise PrefjaxError(f"--config={path} is not a Python config file (.py)")
  found = os.path.abspath(found)
  argv = [a for a in argv]
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      argv[i] = f"--config={found}{sep}{variant}"
    elif a == "--config" and i + 1 < len(argv):
      argv[i + 1] = f"{found}{sep}{variant}"
  return argv


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if hasattr(v, "items") and not isinstance(v, str):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _check_overrides(argv, config, default):
  """A one-line error for an override naming no field, or whose value has the wrong kind."""
  fields = _flatten(default)
  for a in argv[1:]:
    if not a.startswith("--config."):
      continue
    name = a[len("--config."):].split("=", 1)[0]
    if name not in fields and not any(f.startswith(name + ".") for f in fields):
      near = difflib.get_close_matches(name, list(fields), n=3)
      hint = f"; did you mean {', '.join(near)}?" if near else ""
      raise PrefjaxError(f"--config.{name}: the config has no field {name!r}{hint}")
  values = _flatten(config)
  for name, want in fields.items():
    got = values.get(name)
    if isinstance(want, (tuple, list)):
      if not isinstance(got, (tuple, list)):
        raise PrefjaxError(f"config.{name} must be a list like {tuple(want)!r}, got {got!r}")
      kinds = {type(x) for x in want}
      numeric = want and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in want)
      for i, x in enumerate(got):
        if numeric and not (isinstance(x, (int, float)) and not isinstance(x, bool)):
          raise PrefjaxError(f"config.{name}[{i}] must be a number (config.{name} is like {tuple(want)!r}), "
                             f"got {x!r}; give e.g. --config.{name}='{tuple(want)!r}'")
        if kinds == {str} and not isinstance(x, str):
          raise PrefjaxError(f"config.{name}[{i}] must be a name (config.{name} is like {tuple(want)!r}), "
                             f"got {x!r}")


def _load_module(path):
  spec = importlib.util.spec_from_file_location("_prefjax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _load(argv):
  """Parses the flags; returns (config, workdir, overwrite) or raises PrefjaxError with one line."""
  argv = _resolve_config(argv)
  spec = _argument(argv, "config")
  path, _, variant = spec.partition(":")
  default = None
  try:
    default = _load_module(path).get_config(*([variant] if variant else []))
  except ValueError as e:  # common.parse_arg: an unknown variant.
    raise PrefjaxError(f"--config={spec}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise PrefjaxError(f"--config={spec}: the config file failed to load: {type(e).__name__}: {e}") from None
  _check_overrides(argv, default, default)  # Unknown fields first: the flag parser's message is poor.
  saved = sys.argv
  sys.argv = argv  # config_flags reads the overrides from sys.argv.
  try:
    flags.FLAGS(argv)
    config = _CONFIG.value
  except flags.Error as e:
    raise PrefjaxError(str(e).splitlines()[0]) from None
  except (AttributeError, KeyError, ValueError, TypeError, OSError) as e:
    raise PrefjaxError(f"bad flag value: {e}") from None
  finally:
    sys.argv = saved
  _check_overrides(argv, config, default)
  return config, _WORKDIR.value, _OVERWRITE.value


def _resume_command(argv):
  return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m", "experiments.main"]
                  + [a for a in argv[1:] if a != "--overwrite"])


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
    print(usage())
    return 0
  verbose = _argument(argv, "verbosity") not in (None, "0", "-1", "-2", "-3")
  try:
    config, workdir, overwrite = _load(argv)
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if workdir is None:
      raise PrefjaxError("--workdir is required: a folder for the run's outputs, e.g. --workdir=runs/NAME")
    workdir_lib.check_path(workdir)
    run = runners.get_runner(config.experiment)
    summary = run(config, workdir, overwrite=overwrite, command=_resume_command(argv))
  except PrefjaxError as e:
    if verbose:
      traceback.print_exc()
    print(f"error: {e}", file=sys.stderr)
    return 2
  except preemption.Preempted as e:
    print(f"stopped: {e}\nthe workdir is marked interrupted; resume with:\n  {_resume_command(argv)}",
          file=sys.stderr, flush=True)
    return preemption.exit_code(e.signum)
  except KeyboardInterrupt:
    print(f"stopped at once (second signal); the workdir is marked interrupted; resume from its last "
          f"checkpoint with:\n  {_resume_command(argv)}", file=sys.stderr, flush=True)
    return 130
  print(f"done: {os.path.abspath(workdir)} (the run took {(summary or {}).get('seconds', 0.0):.1f} s)")
  return 0


def cli():
  """The `prefjax-run` console script: `python -m experiments.main` under another name."""
  sys.exit(main())


if __name__ == "__main__":
  cli()

"""Every documentation reference in the code resolves inside the repository.

Docstrings and comments cite `docs/<page>.md` and `docs/<page>.md §n` (a numbered section of that page); a
person who clones the repository must be able to open each one. Citations of planning notes that are not in
the repository (THEORY / DESIGN notes named without a docs/ path) and of issue numbers are refused.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("prefjax", "experiments", "analysis", "benchmarks", "tests", "colab")
SUFFIXES = (".py", ".ipynb", ".sh", ".md")


def _files():
  for top in SOURCES:
    for folder, _, names in os.walk(os.path.join(ROOT, top)):
      for name in names:
        if name.endswith(SUFFIXES):
          yield os.path.join(folder, name)
  yield os.path.join(ROOT, "README.md")


def _sections(page):
  with open(os.path.join(ROOT, "docs", page), encoding="utf-8") as f:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", f.read(), flags=re.M))


def test_every_docs_reference_names_an_existing_page_and_section():
  pages, missing = {}, []
  for path in _files():
    if os.path.abspath(path) == os.path.abspath(__file__):
      continue
    with open(path, encoding="utf-8") as f:
      text = f.read()
    rel = os.path.relpath(path, ROOT)
    for page, section in re.findall(r"docs/([\w-]+\.md)(?: ?§ ?(\d+(?:\.\d+)?))?", text):
      if not os.path.isfile(os.path.join(ROOT, "docs", page)):
        missing.append(f"{rel}: docs/{page}")
      elif section:
        if page not in pages:
          pages[page] = _sections(page)
        if section not in pages[page]:
          missing.append(f"{rel}: docs/{page} §{section}")
  assert not missing, "references to pages or sections that do not exist:\n" + "\n".join(sorted(set(missing)))


def test_no_reference_to_notes_outside_the_repository_or_to_issue_numbers():
  bad = []
  for path in _files():
    if os.path.abspath(path) == os.path.abspath(__file__):
      continue
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if re.search(r"(?<![/\w])(THEORY|DESIGN)\.md", line) or re.search(r"\.\./shared", line) or re.search(
            r"\b[Ii]ssues? #?\d+", line):
          bad.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()[:100]}")
  assert not bad, "citations a clone cannot follow:\n" + "\n".join(bad)

"""The one loader of matplotlib for the figure modules: pyplot on the Agg backend, imported on first draw."""


def pyplot():
  """`matplotlib.pyplot` with the Agg backend (figures go to PNG files; nothing is displayed).

  Imported when a figure is drawn, not when a figure module is imported, so that runners (which import their
  figure module) and `import prefjax.plotting` do not load matplotlib.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt

"""The training-free side of openavs-st: labelers that turn unlabeled audio-visual data into a pseudo-label
store (``python -m pseudolabel``; see :mod:`pseudolabel.openavs`) and score a store against AVSBench
(``python -m pseudolabel.evaluate``). Components by role: :mod:`pseudolabel.alm`, :mod:`pseudolabel.vlm`,
:mod:`pseudolabel.llm`, :mod:`pseudolabel.vfm`. Importing this package imports nothing heavy."""

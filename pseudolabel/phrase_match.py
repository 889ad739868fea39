"""Phrase -> class names of a closed vocabulary, by words: the one text-matching rule of the labelers.

Used by the ``cam`` grounder (phrases -> ImageNet classes, :mod:`pseudolabel.vfm.cam`) and by the semantic
pseudo-labels (phrases -> AVSBench-semantic classes, :mod:`pseudolabel.semantic`). A phrase and every class
name are split into lower-case words with a crude English singular (``dogs`` -> ``dog``); then

1. **families** (synonym lists, ours, per vocabulary): every family with a synonym occurring in the phrase
   as a run of words gives its classes;
2. otherwise the classes whose **whole name** occurs in the phrase (stop words such as "sound" or
   "playing" removed from the phrase first);
3. otherwise the classes whose **last word** is a word of the phrase (``guitar`` -> acoustic guitar,
   electric guitar).

:meth:`PhraseMatcher.matches` returns every class of the first rule that matches (the cam grounder looks for
all of them); :meth:`PhraseMatcher.best` picks one, weighing rules 1 and 2 together: the longest match (in
words), ties going to the match that ends last in the phrase (object phrases put the object last: "a man
playing the guitar" -> guitar).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Words that carry no object: never matched against class names.
STOPWORDS = frozenset(
    "a an the of and or with in on at to from for by is are be being someone something some its their his her "
    "sound sounds noise noises voice music playing play plays making make makes".split()
)


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters and digits; ``-`` and ``_`` split), each made singular."""
    return [singular(word) for word in re.findall(r"[a-z0-9]+", text.lower())]


# Plurals the suffix rules below get wrong (wolves -> wolve, axes -> ax, men kept as a short word).
IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "geese": "goose", "mice": "mouse",
    "teeth": "tooth", "feet": "foot", "oxen": "ox", "wolves": "wolf", "knives": "knife", "leaves": "leaf",
    "calves": "calf", "halves": "half", "shelves": "shelf", "axes": "axe", "buses": "bus", "busses": "bus",
}  # fmt: skip


def singular(word: str) -> str:
    """A crude English singular (dogs -> dog, horses -> horse, puppies -> puppy, boxes -> box, glasses -> glass,
    wolves -> wolf, men -> man); short words and words in -ss, -us, -is are kept."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zzes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def find(haystack: Sequence[str], part: Sequence[str]) -> int:
    """End position (exclusive) of the last occurrence of ``part`` as a contiguous run of ``haystack``; -1 if
    it does not occur (or is empty)."""
    n = len(part)
    if n == 0:
        return -1
    ends = [i + n for i in range(len(haystack) - n + 1) if list(haystack[i : i + n]) == list(part)]
    return ends[-1] if ends else -1


@dataclass(frozen=True)
class Match:
    """One class a phrase matched: its index, the matched length in words and where the match ends in the
    phrase."""

    index: int
    length: int
    end: int


class PhraseMatcher:
    """Matches phrases to the classes of one vocabulary (see the module docstring for the rule).

    Args:
        names: the class names in index order.
        families: family name -> (synonyms, classes), classes given as indices or as names of ``names``.
        skip: indices never matched (e.g. the background class).
    """

    def __init__(
        self,
        names: Sequence[str],
        families: Mapping[str, tuple[Sequence[str], Sequence[int | str]]] | None = None,
        skip: Sequence[int] = (),
    ) -> None:
        self.names = tuple(names)
        self._name_words = tuple(words(name) for name in self.names)
        self._skip = frozenset(int(i) for i in skip)
        self._families = [
            ([words(s) for s in synonyms], self._indices(classes, family))
            for family, (synonyms, classes) in (families or {}).items()
        ]

    def _indices(self, classes: Sequence[int | str], family: str) -> list[int]:
        out = []
        for item in classes:
            if isinstance(item, str):
                if item not in self.names:
                    raise KeyError(f"family {family!r}: {item!r} is not a class name of this vocabulary")
                out.append(self.names.index(item))
            else:
                out.append(int(item))
        return out

    def _family_matches(self, phrase_words: list[str]) -> dict[int, Match]:
        found: dict[int, Match] = {}
        for synonyms, classes in self._families:
            hits = [(len(s), end) for s in synonyms if (end := find(phrase_words, s)) >= 0]
            if hits:
                length, end = max(hits)
                for index in classes:
                    old = found.get(index)
                    if old is None or (length, end) > (old.length, old.end):
                        found[index] = Match(index, length, end)
        return found

    @staticmethod
    def _content(phrase_words: list[str]) -> tuple[list[str], list[int]]:
        """The phrase's words without stop words, and where each stands in the phrase."""
        kept = [i for i, word in enumerate(phrase_words) if word not in STOPWORDS]
        return [phrase_words[i] for i in kept], kept

    def _name_matches(self, phrase_words: list[str]) -> dict[int, Match]:
        content, where = self._content(phrase_words)
        return {
            index: Match(index, len(name), where[end - 1] + 1)
            for index, name in enumerate(self._name_words)
            if (end := find(content, name)) >= 0
        }

    def _last_word_matches(self, phrase_words: list[str]) -> dict[int, Match]:
        content, where = self._content(phrase_words)
        return {
            index: Match(index, 1, where[max(i for i, word in enumerate(content) if word == name[-1])] + 1)
            for index, name in enumerate(self._name_words)
            if len(name) > 1 and name[-1] in content
        }

    def _kept(self, found: dict[int, Match]) -> list[Match]:
        return sorted((m for m in found.values() if m.index not in self._skip), key=lambda m: m.index)

    def candidates(self, phrase: str) -> list[Match]:
        """Every class of the first rule that matches ``phrase`` (empty when none does)."""
        phrase_words = words(phrase)
        for rule in (self._family_matches, self._name_matches, self._last_word_matches):
            found = self._kept(rule(phrase_words))
            if found:
                return found
        return []

    def matches(self, phrase: str) -> list[int]:
        """Indices of every class of the first rule that matches ``phrase``, ascending."""
        return [m.index for m in self.candidates(phrase)]

    def best(self, phrase: str) -> int | None:
        """The one class ``phrase`` names best: a class named exactly by the phrase; else, among the family
        and whole-name matches together ("a man playing the violin" names both), the longest, ties to the
        one ending last in the phrase, then the lowest index; else a last-word match; None when nothing
        matches."""
        phrase_words = words(phrase)
        for index, name in enumerate(self._name_words):
            if name == phrase_words and index not in self._skip:
                return index
        found = self._kept({**self._name_matches(phrase_words), **self._family_matches(phrase_words)})
        found = found or self._kept(self._last_word_matches(phrase_words))
        if not found:
            return None
        return max(found, key=lambda m: (m.length, m.end, -m.index)).index

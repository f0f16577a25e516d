"""Slack message text -> plain training text, redaction, canonical keys and near-duplicate grouping.

Pure helpers (the standard library, and ``phonenumbers`` for redaction); no Slack client, database
or network access.

* :func:`slack_to_plain` turns Slack ``mrkdwn`` (mentions, links, formatting markers, HTML entities)
  into plain text suitable as a training example.
* :func:`strip_controls` drops NUL and the other C0 control characters (tab and newline kept):
  PostgreSQL cannot store NUL in text, so the same rule holds on every database;
  :func:`scrub_nul` does it for every string of a request body. :func:`has_visible` tells whether
  a text shows anything at all (zero-width and other invisible characters do not count).
* :func:`redact` replaces e-mail addresses and phone numbers with ``[EMAIL]`` / ``[PHONE]``.
* :func:`canonical` gives a normalised key for duplicate detection.
* :func:`near_duplicate_groups` groups exact and near duplicates with an *exact* (not sampled)
  Jaccard similarity join, so results are deterministic across processes and runs.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import phonenumbers

__all__ = [
    "canonical",
    "has_visible",
    "near_duplicate_groups",
    "redact",
    "scrub_nul",
    "slack_to_plain",
    "strip_controls",
]

# --------------------------------------------------------------------------------------------------
# control and invisible characters
# --------------------------------------------------------------------------------------------------

NUL = "\x00"
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Letters and symbols that render as nothing (fillers, a blank braille pattern, the Mongolian
# vowel separator); the categories below cover the rest (spaces, controls, format characters such
# as zero-width spaces and joiners, combining marks with nothing to combine with).
_INVISIBLE_CHARS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def strip_controls(text: str) -> str:
    """`text` without NUL and the other C0 control characters (tab, newline and CR are kept)."""
    return _CONTROL_RE.sub("", text) if _CONTROL_RE.search(text) else text


def has_visible(text: str) -> bool:
    """Whether `text` shows at least one character (not only spaces or invisible characters)."""
    return any(
        ch not in _INVISIBLE_CHARS and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in text
    )


def scrub_nul(value: object) -> object:
    """Remove NUL characters from every string inside `value` (dicts and lists changed in place);
    returns the cleaned value (a new string for a string)."""
    if isinstance(value, str):
        return value.replace(NUL, "") if NUL in value else value
    if isinstance(value, dict):
        for key in list(value):
            cleaned_key = scrub_nul(key)
            item = scrub_nul(value.pop(key))
            value[cleaned_key] = item
    elif isinstance(value, list):
        value[:] = [scrub_nul(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------------
# slack_to_plain
# --------------------------------------------------------------------------------------------------

_PH_OPEN = "\ue000"  # private-use characters delimit internal placeholders
_PH_CLOSE = "\ue001"
_PLACEHOLDER_RE = re.compile(f"{_PH_OPEN}(\\d+){_PH_CLOSE}")
_ANGLE_RE = re.compile(r"<([^<>\n]+)>")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")
_FENCE_RE = re.compile(r"```(.*?)```", re.DOTALL)
_INLINE_CODE_RE = re.compile(r"`([^`\n]+)`")
_ENTITY_RE = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")
_BROADCASTS = frozenset({"here", "channel", "everyone"})


def _format_re(marker: str) -> re.Pattern[str]:
    """Build the regex that removes one Slack formatting marker pair (``*``, ``_`` or ``~``).

    The opening marker must not follow a letter/digit or another marker and must be followed by a
    non-space; the closing marker mirrors that. So ``snake_case``, ``__init__``, ``2*3*4`` and
    ``a * b`` are left alone while ``*bold*``, ``(_note_)`` and ``~gone~`` lose their markers.
    The pattern starts with the literal marker so the regex engine can scan for it quickly.
    """
    m = re.escape(marker)
    return re.compile(rf"{m}(?<![^\W_]{m})(?<!{m}{m})(?=[^\s{m}])([^\n]*?[^\s{m}]){m}(?![^\W_])(?!{m})")


_FORMAT_RES = tuple((marker, _format_re(marker)) for marker in ("*", "_", "~"))


def _convert_token(body: str, users: Mapping[str, str], channels: Mapping[str, str]) -> str | None:
    """Convert the inside of one ``<...>`` Slack token; ``None`` when it is not a Slack token."""
    target, _, label = body.partition("|")
    label = label.strip()
    if target.startswith("@"):
        user_id = target[1:]
        if user_id in users:
            return "@" + users[user_id].lstrip("@")
        return "@" + (label.lstrip("@") or "user")
    if target.startswith("#"):
        if label:
            return "#" + label.lstrip("#")
        channel_id = target[1:]
        if channel_id in channels:
            return "#" + channels[channel_id].lstrip("#")
        return "#channel"
    if target.startswith("!"):
        command = target[1:]
        if command in _BROADCASTS:
            return "@" + command
        if command.startswith("subteam^"):
            return "@" + (label.lstrip("@") or "group")
        if command.startswith("date^"):
            return label
        return label or "@" + command.split("^", 1)[0]
    if _SCHEME_RE.fullmatch(target):
        if label:
            return label
        if target.lower().startswith("mailto:"):
            return target[len("mailto:") :]
        return target
    return None


def _normalise_code(content: str) -> str:
    """Right-trim each line of a fenced block and drop its leading/trailing blank lines."""
    lines = [line.rstrip() for line in content.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def slack_to_plain(
    text: str,
    users: Mapping[str, str] | None = None,
    channels: Mapping[str, str] | None = None,
) -> str:
    """Convert Slack message text (``mrkdwn``) into plain text.

    Conversions, in order:

    * ``<@U123>`` / ``<@U123|name>`` -> ``@name`` (``users`` map first, then the ``|name`` label,
      else ``@user``); ``<#C123|general>`` -> ``#general`` (label first, then ``channels`` map, else
      ``#channel``); ``<!here>`` / ``<!channel>`` / ``<!everyone>`` -> ``@here`` etc.;
      ``<!subteam^S123|@oncall>`` -> ``@oncall`` (``@group`` without label);
      ``<!date^...|fallback>`` -> ``fallback``; ``<https://x|label>`` -> ``label``;
      ``<https://x>`` -> ``https://x``; ``<mailto:a@b.c|a@b.c>`` -> ``a@b.c``. Angle-bracket text
      that is not a Slack token is left as is. Tokens are converted inside code too.
    * Fenced blocks (triple backticks) keep their content verbatim (indentation included, trailing
      spaces and surrounding blank lines dropped) and are put on their own lines when multi-line;
      inline code keeps its content. Formatting markers are never stripped inside code.
    * ``*bold*``, ``_italic_`` and ``~strike~`` markers are removed only at word boundaries, so
      ``snake_case``, ``__init__`` and asterisks in ``2*3*4`` or ``a * b`` survive.
    * ``&amp;``, ``&lt;``, ``&gt;`` are unescaped last (so escaped text never forms a token).
    * Emoji shortcodes such as ``:tada:`` are kept.
    * Whitespace: CRLF -> LF, lines outside code are trimmed, 3+ newlines collapse to 2, and the
      result has no leading/trailing blank lines. NUL and other control characters are dropped.

    Args:
        text: Raw Slack message text.
        users: Optional user id -> display name.
        channels: Optional channel id -> channel name.

    Returns:
        The plain text.
    """
    users = users or {}
    channels = channels or {}
    text = strip_controls(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace(_PH_OPEN, "").replace(_PH_CLOSE, "")
    stash: list[str] = []

    def keep(value: str) -> str:
        stash.append(value)
        return f"{_PH_OPEN}{len(stash) - 1}{_PH_CLOSE}"

    def token(match: re.Match[str]) -> str:
        converted = _convert_token(match.group(1), users, channels)
        return match.group(0) if converted is None else keep(converted)

    if "<" in text:
        text = _ANGLE_RE.sub(token, text)
    fences: set[int] = set()

    def fence(match: re.Match[str]) -> str:
        placeholder = keep(_normalise_code(match.group(1)))
        fences.add(len(stash) - 1)
        return placeholder

    if "`" in text:
        text = _FENCE_RE.sub(fence, text)
        text = _INLINE_CODE_RE.sub(lambda match: keep(match.group(1)), text)
    for marker, pattern in _FORMAT_RES:
        if marker not in text:
            continue
        # Repeat so nested markers such as *_both_* are fully removed.
        previous = None
        while previous != text:
            previous = text
            text = pattern.sub(r"\1", text)

    def restore(value: str) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: restore(stash[int(m.group(1))]), value)

    def restore_inline(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return match.group(0) if index in fences else restore(stash[index])

    if stash:
        text = _PLACEHOLDER_RE.sub(restore_inline, text)
    text = "\n".join(line.strip() for line in text.split("\n"))

    def restore_fence(match: re.Match[str]) -> str:
        content = restore(stash[int(match.group(1))])
        if "\n" in content:
            source = match.string
            before = source[match.start() - 1] if match.start() > 0 else "\n"
            after = source[match.end()] if match.end() < len(source) else "\n"
            content = ("" if before == "\n" else "\n") + content + ("" if after == "\n" else "\n")
        return content

    if fences:
        text = _PLACEHOLDER_RE.sub(restore_fence, text)
    if "&" in text:
        text = _ENTITY_RE.sub(lambda m: _ENTITIES[m.group(1)], text)
    if "\n\n\n" in text:
        text = _MANY_NEWLINES_RE.sub("\n\n", text)
    return text.strip("\n").rstrip()


# --------------------------------------------------------------------------------------------------
# redact
# --------------------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+"  # local part
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"  # domain with a TLD
)
# National numbers written without a country code are read as NANP numbers (the +1 plan: the US,
# Canada and the Caribbean), the usual unprefixed form in Slack, or as numbers of a few large plans
# whose national form starts with the trunk prefix 0. Plans without a trunk prefix (Italy, Spain…)
# are left out on purpose: there a leading 0 belongs to the number, and dates such as 01.05.2024
# pass as valid ones. Each region tried costs about 0.25 ms per text that holds a number.
_NANP = "US"
_TRUNK_PREFIX_REGIONS = ("GB", "DE", "FR")
_DIGIT_GROUP_RE = re.compile(r"\d+")
_MIN_PHONE_DIGITS = 7  # the shortest number with its country code (+290 1234) has 7 digits


def _written_in_nanp_groups(match: phonenumbers.PhoneNumberMatch) -> bool:
    """Whether a national match is written as NANP numbers are: one run of digits, or the groups of
    the national format (``555 123 4567``, ``(555) 123-4567``), optionally after the trunk 1."""
    written = [len(group) for group in _DIGIT_GROUP_RE.findall(match.raw_string)]
    national = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.NATIONAL)
    expected = [len(group) for group in _DIGIT_GROUP_RE.findall(national)]
    return len(written) == 1 or written in (expected, [1, *expected])


def _phone_spans(text: str) -> list[tuple[int, int]]:
    """Where phone numbers are in ``text``, found by libphonenumber's matcher:

    * ``+CC …``, any country: leniency POSSIBLE (a length the country's plan allows). A leading
      ``+`` is a deliberate phone number, and VALID would keep numbers in ranges the metadata does
      not list as assigned (fictional 555 numbers, new ranges): still someone's data.
    * NANP without a country code: POSSIBLE as well, but only when written in NANP's digit groups,
      so ``1 2 3 4 5 6 7`` or ``10 12345`` are not read as a 7-digit local number.
    * Trunk-prefix plans: VALID (an assigned range, the trunk prefix present), so plain numbers
      such as ``order 123456``, dates, decimals or IP addresses are never read as one.

    A match glued to a letter or digit (``v1234567``) is not a phone number.
    """
    if sum(ch.isdigit() for ch in text) < _MIN_PHONE_DIGITS:
        return []
    possible = phonenumbers.Leniency.POSSIBLE
    matches = list(phonenumbers.PhoneNumberMatcher(text, None, leniency=possible))
    matches += [
        m
        for m in phonenumbers.PhoneNumberMatcher(text, _NANP, leniency=possible)
        if not m.raw_string.startswith("+") and _written_in_nanp_groups(m)
    ]
    for region in _TRUNK_PREFIX_REGIONS:
        matches += phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    return [
        (m.start, m.end)
        for m in matches
        if not (m.start > 0 and text[m.start - 1].isalnum())
        and not (m.end < len(text) and text[m.end].isalnum())
    ]


def redact(text: str) -> str:
    """Replace e-mail addresses with ``[EMAIL]`` and phone numbers with ``[PHONE]``.

    Phone numbers are found with ``phonenumbers`` (see :func:`_phone_spans`): international ones
    (``+44 20 7946 0958``, ``+1 (555) 123-4567``, ``+4915112345678``), NANP numbers without the
    country code (``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``, ``1-800-555-0199``,
    ``555-1234``, ``5551234567``) and national numbers of the UK, Germany and France with their
    trunk prefix (``020 7946 0958``, ``030 1234567``, ``06 12 34 56 78``). A bare run of 7 or 10
    digits reads as a NANP number and is redacted (an order id of that length too: the rule errs
    towards redaction).

    Not redacted: dates (``2024-05-01``, ``01.05.2024``), short numbers (``order 123456``), dotted
    thousands and IP addresses, decimals, lists of years or single digits, times, and digits glued
    to letters (``v1234567``).

    Args:
        text: Plain text (run :func:`slack_to_plain` first for Slack text).

    Returns:
        The redacted text.
    """
    text = _EMAIL_RE.sub("[EMAIL]", text)
    parts = []
    end = 0
    for start, stop in sorted(_phone_spans(text)):
        if start >= end:  # a number found through several regions counts once
            parts += [text[end:start], "[PHONE]"]
            end = stop
        elif stop > end:
            end = stop
    return "".join(parts) + text[end:]


# --------------------------------------------------------------------------------------------------
# canonical
# --------------------------------------------------------------------------------------------------

_APOSTROPHES = frozenset("'\u2018\u2019\u02bc")
_DIGITS_RE = re.compile(r"\d+")


class _PunctuationTable(dict[int, str | None]):
    """Translation table for :func:`canonical`, filled lazily and cached per code point.

    Punctuation, symbols, separators and control characters map to a space, apostrophes are
    removed, everything else is kept.
    """

    def __missing__(self, codepoint: int) -> str | None:
        char = chr(codepoint)
        value: str | None
        if char in _APOSTROPHES:
            value = None
        elif unicodedata.category(char)[0] in "PSCZ":
            value = " "
        else:
            value = char
        self[codepoint] = value
        return value


_PUNCTUATION_TABLE = _PunctuationTable()


def canonical(text: str) -> str:
    """Normalised key for duplicate detection.

    Steps: :func:`slack_to_plain`, Unicode NFKC, case folding (a stronger lowercase), apostrophes
    removed (``don't`` -> ``dont``), other punctuation / symbols / control characters -> space,
    every run of digits -> ``0``, whitespace collapsed to single spaces and trimmed.

    Args:
        text: Raw Slack or plain text.

    Returns:
        The canonical form (may be empty, e.g. for an emoji-only message).
    """
    value = unicodedata.normalize("NFKC", slack_to_plain(text)).casefold()
    value = value.translate(_PUNCTUATION_TABLE)
    value = _DIGITS_RE.sub("0", value)
    return " ".join(value.split())


# --------------------------------------------------------------------------------------------------
# near_duplicate_groups
# --------------------------------------------------------------------------------------------------

# Texts with fewer than _CHAR_MAX_WORDS canonical words are compared on char 5-shingles, texts with
# at least _WORD_MIN_WORDS words on word 3-shingles; texts in between are compared both ways. Every
# text is also compared on its set of words, which ignores their order: the same clauses in another
# order ("I was charged twice and my invoice is wrong" / "my invoice is wrong and I was charged
# twice") share few shingles but all their words.
_CHAR_MAX_WORDS = 32
_WORD_MIN_WORDS = 20
_CHAR_SHINGLE = 5
_WORD_SHINGLE = 3


def _char_shingles(text: str) -> set[str]:
    """Char 5-shingles of a canonical text (the whole text when shorter)."""
    if len(text) <= _CHAR_SHINGLE:
        return {text} if text else set()
    return {text[i : i + _CHAR_SHINGLE] for i in range(len(text) - _CHAR_SHINGLE + 1)}


def _word_shingles(words: list[str]) -> set[str]:
    """Word 3-shingles (space-joined) of a canonical text's words (all words when fewer)."""
    if len(words) <= _WORD_SHINGLE:
        return {" ".join(words)} if words else set()
    return set(map(" ".join, zip(words, words[1:], words[2:], strict=False)))


def _shingle_profile(
    canonical_text: str,
) -> tuple[set[str] | None, set[str] | None, set[str] | None]:
    """(char 5-shingles or None, word 3-shingles or None, word set or None) for one canonical text."""
    words = canonical_text.split()
    chars = _char_shingles(canonical_text) if len(words) < _CHAR_MAX_WORDS else None
    word = _word_shingles(words) if len(words) >= _WORD_MIN_WORDS else None
    return chars, word, set(words) or None


def _jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity; 1.0 for two empty sets."""
    if not a and not b:
        return 1.0
    overlap = len(a) - len(a - b)  # cheaper than len(a & b) for similar sets: a smaller set is built
    return overlap / (len(a) + len(b) - overlap)


class _UnionFind:
    """Union-find whose root is always the smallest index of its component."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))
        self.merges = 0  # number of successful unions so far

    def find(self, node: int) -> int:
        parent = self.parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return
        self.merges += 1
        if root_a < root_b:
            self.parent[root_b] = root_a
        else:
            self.parent[root_a] = root_b


_Entry = tuple[int, int, int]  # (set size, set number, position of the token in that set)


def _normalise_posting(posting: dict[int, list[_Entry]], find: Callable[[int], int]) -> None:
    """Re-key a posting's component lists by their current union-find roots (merging, kept sorted)."""
    for key in list(posting):
        root = find(key)
        if root == key:
            continue
        moved = posting.pop(key)
        kept = posting.get(root)
        if kept is None:
            posting[root] = moved
        else:
            kept.extend(moved)
            kept.sort()


def _similarity_join(members: list[int], sets: list[set[str]], threshold: float, uf: _UnionFind) -> None:
    """Union every pair of ``members`` whose shingle sets have Jaccard >= ``threshold``.

    Exact prefix-filtering join in the style of AllPairs / PPJoin; the filters below only discard
    pairs that provably cannot reach the threshold, and every remaining candidate is verified
    exactly, so the links found do not depend on the other sets or on the processing order.

    * Tokens are ordered globally by ascending frequency (ties by first appearance); tokens that
      occur in a single set come first and are never indexed (they cannot be shared).
    * Sets are processed by ascending size. A pair with Jaccard >= t needs an overlap of at least
      ``alpha = ceil(t / (1 + t) * (|x| + |y|))``, so the larger set ``x`` must share a token in its
      first ``|x| - ceil(t * |x|) + 1`` positions (the probe prefix) with the first
      ``|y| - ceil(2t / (1 + t) * |y|) + 1`` positions of the smaller ``y`` (the index prefix).
    * Length filter ``|y| >= t * |x|``: posting entries are kept sorted by size and entries too
      small for the current set are dropped for good (later sets are at least as large).
    * Positional filter: when ``y`` is first met through a token at positions ``i`` in ``x`` and ``j``
      in ``y``, no earlier token is shared, so the overlap is at most ``1 + min(|x| - i - 1, |y| - j - 1)``.
    * Posting lists are grouped by union-find component: a component already connected to ``x``
      is skipped as a whole, and verification inside a component stops at its first link, since
      only connectivity matters. This keeps large clusters of near-identical texts linear.
    """
    frequency: Counter[str] = Counter(itertools.chain.from_iterable(sets))
    shared_tokens = sorted(
        (token for token, count in frequency.items() if count > 1), key=frequency.__getitem__
    )
    rank = dict(zip(shared_tokens, range(len(shared_tokens)), strict=True))
    del shared_tokens, frequency
    rank_of = rank.__getitem__
    rank_keys = rank.keys()
    index_ratio = 2 * threshold / (1 + threshold)
    overlap_ratio = threshold / (1 + threshold)
    # token rank -> {component root -> [(set size, set number, token position)] sorted}
    index: dict[int, dict[int, list[_Entry]]] = {}
    normalised_at: dict[int, int] = {}  # token rank -> uf.merges when its posting was last re-keyed
    find = uf.find
    for k in sorted(range(len(sets)), key=lambda n: len(sets[n])):
        shingles = sets[k]
        size = len(shingles)
        shared = sorted(map(rank_of, rank_keys & shingles))
        singles = size - len(shared)
        probe_length = size - math.ceil(threshold * size - 1e-6) + 1 - singles
        node = members[k]
        if probe_length > 0:
            smallest = (math.ceil(threshold * size - 1e-9),)
            seen: set[int] = set()
            for offset, token in enumerate(shared[:probe_length]):
                posting = index.get(token)
                if posting is None:
                    continue
                if normalised_at.get(token) != uf.merges:
                    _normalise_posting(posting, find)
                    normalised_at[token] = uf.merges
                i = singles + offset
                for root in list(posting):
                    entries = posting[root]
                    if entries[0] < smallest:
                        del entries[: bisect.bisect_left(entries, smallest)]
                        if not entries:
                            del posting[root]
                            continue
                    if root == find(node):
                        continue
                    for other_size, other_k, j in entries:
                        if other_k in seen:
                            continue
                        seen.add(other_k)
                        if (
                            1 + min(size - i - 1, other_size - j - 1)
                            < overlap_ratio * (size + other_size) - 1e-9
                        ):
                            continue
                        if _jaccard(shingles, sets[other_k]) >= threshold:
                            uf.union(node, members[other_k])
                            break
        root = find(node)
        index_length = size - math.ceil(index_ratio * size - 1e-6) + 1 - singles
        for offset, token in enumerate(shared[: max(index_length, 0)]):
            index.setdefault(token, {}).setdefault(root, []).append((size, k, singles + offset))


def near_duplicate_groups(texts: Sequence[str], threshold: float = 0.85) -> list[int]:
    """Group exact and near-duplicate texts.

    Texts are compared on their :func:`canonical` forms. Equal canonical forms are always grouped
    (this includes all texts whose canonical form is empty). Two different canonical forms are
    linked when the Jaccard similarity of their shingle sets is at least ``threshold``: char
    5-shingles when both have fewer than 32 words, word 3-shingles when both have at least 20 words
    (texts of 20-31 words are compared both ways), and always their sets of words, which ignore
    word order: the same clauses or words in another order are near duplicates (at the default
    0.85, a reordering links, and so does a reordering with one word changed in a text of 13 distinct
    words or more: 12/14 ≥ 0.85). A link in any of the three counts. Groups are the connected
    components of these links (union-find), so grouping is transitive.

    The group index of a text is the index of the EARLIEST text of its group. Because a link
    depends only on the two texts involved, appending texts never changes the group index of an
    existing text, except when a new text links (bridges) two previously separate groups: the later
    group then takes the earlier group's index.

    The join is exact (prefix filtering with exact verification, no sampling or hashing), so the
    result is deterministic across processes and independent of ``PYTHONHASHSEED``.

    Limits at the default threshold of 0.85: one typo is tolerated in texts of roughly 60 to 200
    characters (char shingles) and in texts of about 40 words or more (word shingles); a typo in a
    shorter text, or in a text of about 32-40 words, changes too many shingles. Thresholds below
    about 0.65 may miss links between a text under 20 words and one of 32 words or more, which are
    never compared. Run time is about linear for ordinary data (see the module tests: 5,000 mixed
    texts in well under 2 s); corpora where thousands of texts are pairwise just below the
    threshold (one template, slots filled from a tiny vocabulary) need a verification per such
    pair and can take several seconds.

    Args:
        texts: Texts in arrival order.
        threshold: Jaccard threshold in (0, 1].

    Returns:
        One group index per text.

    Raises:
        ValueError: ``threshold`` is outside (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
    uf = _UnionFind(len(texts))
    first_seen: dict[str, int] = {}
    unique: list[int] = []
    unique_forms: list[str] = []
    for i, text in enumerate(texts):
        form = canonical(text)
        anchor = first_seen.setdefault(form, i)
        if anchor == i:
            unique.append(i)
            unique_forms.append(form)
        else:
            uf.union(anchor, i)
    # One exact join per kind of profile: char shingles, word shingles, word sets (order-insensitive).
    joins: tuple[tuple[list[int], list[set[str]]], ...] = (([], []), ([], []), ([], []))
    for i, form in zip(unique, unique_forms, strict=True):
        for (members, sets), profile in zip(joins, _shingle_profile(form), strict=True):
            if profile is not None:
                members.append(i)
                sets.append(profile)
    for members, sets in joins:
        _similarity_join(members, sets, threshold, uf)
    return [uf.find(i) for i in range(len(texts))]


def label_named(text: str, labels: Sequence[str]) -> str | None:
    """The label a classifier's answer names, or None when it names none (or several)."""
    if text in labels:
        return text
    cleaned = re.sub(r"[^\w\s-]", " ", text.lower()).split()
    exact = " ".join(cleaned)
    if exact in labels:
        return exact
    named = [label for label in labels if label in cleaned]
    return named[0] if len(named) == 1 else None

"""Tests for runner.data.textnorm: Slack conversion, redaction, canonical keys and near-duplicate groups."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.data.textnorm import _shingle_profile, canonical, near_duplicate_groups, redact, slack_to_plain

USERS = {"U123": "alice", "U456": "@bob"}
CHANNELS = {"C2": "random"}

# ------------------------------------------------------------------------------------------------
# slack_to_plain
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        # users: map first, then |label, else @user
        ("hi <@U123>", "hi @alice"),
        ("hi <@U456>", "hi @bob"),
        ("hi <@U123|legacy>", "hi @alice"),
        ("hi <@U999|carol>", "hi @carol"),
        ("hi <@U999>", "hi @user"),
        # channels: label first, then map, else #channel
        ("see <#C1|general>", "see #general"),
        ("see <#C2>", "see #random"),
        ("see <#C2|>", "see #random"),
        ("see <#C3>", "see #channel"),
        # broadcasts and user groups
        ("<!here> hi", "@here hi"),
        ("<!channel> hi", "@channel hi"),
        ("<!everyone> hi", "@everyone hi"),
        ("<!here|here> hi", "@here hi"),
        ("ping <!subteam^S123|@oncall>", "ping @oncall"),
        ("ping <!subteam^S123|oncall>", "ping @oncall"),
        ("ping <!subteam^S123>", "ping @group"),
        (
            "at <!date^1392734382^{date_pretty} at {time}|Feb 18, 2014 at 6:39 AM>",
            "at Feb 18, 2014 at 6:39 AM",
        ),
        # links
        ("go <https://x.example/a_b_c|the docs>", "go the docs"),
        ("go <https://x.example/_a_/b>", "go https://x.example/_a_/b"),
        ("go <http://x.example?a=1&amp;b=2>", "go http://x.example?a=1&b=2"),
        ("mail <mailto:a@b.c|a@b.c>", "mail a@b.c"),
        ("mail <mailto:a@b.c>", "mail a@b.c"),
        ("<https://x.example|Tom &amp; Jerry>", "Tom & Jerry"),
        # not Slack tokens: left alone
        ("a <b and c> d", "a <b and c> d"),
    ],
)
def test_slack_tokens(raw: str, plain: str) -> None:
    assert slack_to_plain(raw, users=USERS, channels=CHANNELS) == plain


def test_slack_tokens_without_maps() -> None:
    assert slack_to_plain("<@U123> in <#C2>") == "@user in #channel"


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("*bold* and _italic_ and ~strike~", "bold and italic and strike"),
        ("use `code` here", "use code here"),
        ("`a*b*c` and `_x_`", "a*b*c and _x_"),
        ("*_both_* and _*both*_", "both and both"),
        ("(_note_), *yes*!", "(note), yes!"),
        ("snake_case_name and __init__ and _private_var", "snake_case_name and __init__ and _private_var"),
        ("2*3*4 = 24 and a * b = c * d", "2*3*4 = 24 and a * b = c * d"),
        ("*args and **kwargs", "*args and **kwargs"),
        ("x = 5 * 3 is *fifteen*", "x = 5 * 3 is fifteen"),
        ("~5 minutes~ish", "~5 minutes~ish"),
        ("*not\nbold*", "*not\nbold*"),
        ("thanks :white_check_mark: :tada: :+1:", "thanks :white_check_mark: :tada: :+1:"),
        ("*<https://x.example|docs>*", "docs"),
    ],
)
def test_formatting_markers(raw: str, plain: str) -> None:
    assert slack_to_plain(raw) == plain


def test_entities_unescaped_after_links() -> None:
    assert slack_to_plain("a &lt;@U123&gt; b") == "a <@U123> b"  # escaped text never becomes a mention
    assert slack_to_plain("x &amp;lt; y &amp; z &gt; w", users=USERS) == "x &lt; y & z > w"


def test_fenced_block_keeps_content() -> None:
    raw = "Here:\n```\ndef f(a_b_c):\n    return *a   \n```\n\n\n\n  done  "
    assert slack_to_plain(raw) == "Here:\ndef f(a_b_c):\n    return *a\n\ndone"


def test_fenced_block_inline_and_multiline_placement() -> None:
    assert slack_to_plain("see ```x = 1``` ok") == "see x = 1 ok"
    assert slack_to_plain("run:```a\n  b```after") == "run:\na\n  b\nafter"
    assert slack_to_plain("```&lt;tag&gt; <@U123>```", users=USERS) == "<tag> @alice"


def test_whitespace_normalisation() -> None:
    raw = "  first line  \r\n\r\n\r\n\r\n   second   \n \n \n \nthird\n\n"
    assert slack_to_plain(raw) == "first line\n\nsecond\n\nthird"
    assert slack_to_plain("a\n\nb") == "a\n\nb"
    assert slack_to_plain("   ") == ""


# ------------------------------------------------------------------------------------------------
# redact
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "redacted"),
    [
        ("mail john.doe@example.co.uk now", "mail [EMAIL] now"),
        ("x_y+tag@sub.example.com, thanks", "[EMAIL], thanks"),
        ("call +1 (555) 123-4567", "call [PHONE]"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("+33 6 12 34 56 78.", "[PHONE]."),
        ("+4915112345678", "[PHONE]"),
        ("(555) 123-4567", "[PHONE]"),
        ("555-123-4567", "[PHONE]"),
        ("555.123.4567", "[PHONE]"),
        ("555 123 4567", "[PHONE]"),
        ("030 1234567", "[PHONE]"),
        ("06 12 34 56 78", "[PHONE]"),
        ("1-800-555-0199", "[PHONE]"),
        ("555-1234", "[PHONE]"),
        ("5551234567", "[PHONE]"),
        ("a@b.io or +49 30 1234567", "[EMAIL] or [PHONE]"),
        ("020 7946 0958", "[PHONE]"),  # UK, national form with the trunk prefix
        ("call 0151 12345678 now", "call [PHONE] now"),  # German mobile, national form
        ("+1 555 123 4567 / +1 555 123 4567", "[PHONE] / [PHONE]"),
    ],
)
def test_redact_positives(raw: str, redacted: str) -> None:
    assert redact(raw) == redacted


@pytest.mark.parametrize(
    "raw",
    [
        "released on 2024-05-01",
        "due 01.05.2024",
        "order 123456",
        "order #12345",
        "12-34-56",
        "10.000.000 units",
        "host 192.168.100.200",
        "pi is 3.14159265",
        "build v1234567",
        "1 2 3 4 5 6 7",
        "we have 10 12345 items",
        "in 2019 2020 2021",
        "at 12:30",
        "$1,000,000",
        "user@localhost",
        "no numbers here",
    ],
)
def test_redact_negatives(raw: str) -> None:
    assert redact(raw) == raw


# ------------------------------------------------------------------------------------------------
# canonical
# ------------------------------------------------------------------------------------------------


def test_canonical_collapses_variants() -> None:
    a = canonical("Hello,   *World*!  Order 12345 shipped.")
    b = canonical("hello world order 999 shipped")
    assert a == b == "hello world order 0 shipped"
    assert canonical("Don't  STOP — it’s ①") == "dont stop its 0"
    assert canonical("Ｆｕｌｌ\u3000ｗｉｄｔｈ") == "full width"  # NFKC
    assert canonical("Straße") == canonical("STRASSE")  # case folding
    assert canonical("ping <@U123> in <#C1|general>") == "ping user in general"
    assert canonical(":tada: !!!") == "tada"
    assert canonical("...") == ""


def test_canonical_keeps_different_texts_apart() -> None:
    assert canonical("reset my password") != canonical("reset my username")


# ------------------------------------------------------------------------------------------------
# near_duplicate_groups
# ------------------------------------------------------------------------------------------------

LONG = (
    "When the nightly export job fails the dashboard keeps showing yesterday's numbers and nobody "
    "notices until the weekly review, so we should add an alert that fires if the export has not "
    "finished by six in the morning and page whoever is on call for the data platform team."
)


def test_exact_and_typo_duplicates_grouped() -> None:
    texts = [
        "How do I reset my password if I no longer have access to the recovery email?",  # 0
        "What is the refund policy for annual plans that were cancelled within the first month?",  # 1
        "how do i reset my password, if i no longer have access to the recovery e-mail",  # 2: canonical
        "How do I reset my pasword if I no longer have access to the recovery email?",  # 3: typo
        "What is the refund policy for anual plans that were cancelled within the first month?",  # 4: typo
        "Where can I download the invoice for last month if I no longer have access to email?",  # 5
        LONG,  # 6
        LONG.replace("dashboard", "dashbaord"),  # 7: typo in a long text
        LONG.replace("nightly", "Nightly").upper(),  # 8: case only
    ]
    assert near_duplicate_groups(texts) == [0, 1, 0, 0, 1, 5, 6, 6, 6]


def test_different_texts_not_grouped() -> None:
    texts = [
        "How do I reset my password?",
        "How do I reset my username?",
        "How do I change my email address?",
        "Reset the staging database please",
        "",
        "ok",
        "no",
    ]
    assert near_duplicate_groups(texts) == list(range(len(texts)))


def test_empty_texts_group_together() -> None:
    assert near_duplicate_groups(["", ":wave:", "...", "  "]) == [0, 1, 0, 0]


def test_earliest_text_is_anchor() -> None:
    texts = ["something else", "Please approve PR 42", "please approve pr 7", "PLEASE APPROVE PR 9!"]
    assert near_duplicate_groups(texts) == [0, 1, 1, 1]
    # Appending texts keeps existing indices.
    more = [*texts, "unrelated question about billing", "Please approve PR 1000"]
    assert near_duplicate_groups(more) == [0, 1, 1, 1, 4, 1]


def test_short_typo_variants_are_not_near_duplicates_at_default_threshold() -> None:
    # Documented limit: one typo in a ~26-char text changes too many of its ~22 char 5-shingles.
    texts = ["How do I reset my password?", "How do I reset my pasword?"]
    assert near_duplicate_groups(texts) == [0, 1]
    assert near_duplicate_groups(texts, threshold=0.6) == [0, 0]


def test_bridge_merges_groups_into_earliest() -> None:
    base = "please move the weekly planning meeting to thursday afternoon because the office is closed"
    one_typo = base.replace("weekly", "weekyl")
    two_typos = one_typo.replace("closed", "clsoed")
    assert near_duplicate_groups([base, two_typos]) == [0, 1]  # too different to be linked directly
    # one_typo is within the threshold of both, so it bridges them; the later group is renamed.
    assert near_duplicate_groups([base, two_typos, one_typo]) == [0, 0, 0]


def test_threshold_validation() -> None:
    with pytest.raises(ValueError):
        near_duplicate_groups(["a"], threshold=0)
    with pytest.raises(ValueError):
        near_duplicate_groups(["a"], threshold=1.5)
    assert near_duplicate_groups([]) == []
    assert near_duplicate_groups(["abc def", "abc deg"], threshold=1.0) == [0, 1]


def _brute_force_groups(texts: list[str], threshold: float) -> list[int]:
    """Reference: compare every pair with the documented rule, union-find to the earliest index."""
    forms = [canonical(t) for t in texts]
    profiles = [_shingle_profile(f) for f in forms]
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for j in range(len(texts)):
        for i in range(j):
            linked = forms[i] == forms[j]
            for a, b in zip(profiles[i], profiles[j], strict=True):
                if a is not None and b is not None and (a or b):
                    linked = linked or len(a & b) / len(a | b) >= threshold
            if linked:
                ri, rj = find(i), find(j)
                parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(len(texts))]


def test_subset_exactly_at_threshold_is_linked() -> None:
    rng = random.Random(5)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(6)) for _ in range(40)]
    long_text, short_text = " ".join(words), " ".join(words[:30])
    # The short text's 28 word 3-shingles are a subset of the long text's 38: Jaccard = 28/38 exactly.
    threshold = 28 / 38
    assert near_duplicate_groups([short_text, long_text], threshold) == [0, 0]
    assert near_duplicate_groups([long_text, short_text], threshold) == [0, 0]
    # Their word sets (30 of 40 distinct words) are closer still: linked up to 30/40, not above.
    assert near_duplicate_groups([short_text, long_text], 30 / 40) == [0, 0]
    assert near_duplicate_groups([short_text, long_text], 30 / 40 + 1e-9) == [0, 1]


@pytest.mark.parametrize("threshold", [0.6, 0.75, 0.85, 0.9])
def test_templated_corpus_matches_brute_force(threshold: float) -> None:
    # Near-threshold pairs: one template with slots from a small vocabulary, plus random edits.
    rng = random.Random(int(threshold * 100))
    slots = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 7))) for _ in range(12)]
    template = "please summarise the ticket about {} and {} for the {} team before {}"
    texts = []
    for _ in range(250):
        text = template.format(*(rng.choice(slots) for _ in range(4)))
        if rng.random() < 0.3:
            text += " " + " ".join(rng.choice(slots) for _ in range(rng.randint(1, 25)))
        if rng.random() < 0.3:
            k = rng.randrange(len(text))
            text = text[:k] + rng.choice(string.ascii_lowercase) + text[k + 1 :]
        texts.append(text)
    assert near_duplicate_groups(texts, threshold) == _brute_force_groups(texts, threshold)


VOCAB = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "zeta", "theta", "pi"]


@st.composite
def text_lists(draw: st.DrawFn, max_size: int = 14) -> list[str]:
    """Lists with many exact / near duplicates and lengths on both sides of the shingle switch."""
    texts: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=max_size))):
        copy = draw(st.booleans())
        if texts and copy:
            words = draw(st.sampled_from(texts)).split()
            op = draw(st.sampled_from(["char", "insert", "delete", "same"]))
            pos = draw(st.integers(min_value=0, max_value=max(len(words) - 1, 0)))
            if op == "char" and words:
                word = words[pos]
                k = draw(st.integers(min_value=0, max_value=len(word) - 1))
                words[pos] = word[:k] + draw(st.sampled_from("xyz")) + word[k + 1 :]
            elif op == "insert":
                words.insert(pos, draw(st.sampled_from(VOCAB)))
            elif op == "delete" and words:
                del words[pos]
            texts.append(" ".join(words))
        else:
            n = draw(st.sampled_from([1, 3, 8, 18, 21, 25, 33, 45]))
            texts.append(" ".join(draw(st.lists(st.sampled_from(VOCAB), min_size=n, max_size=n))))
    return texts


@settings(max_examples=150, deadline=None)
@given(text_lists(), st.sampled_from([0.5, 0.7, 0.85, 0.95]))
def test_matches_brute_force(texts: list[str], threshold: float) -> None:
    assert near_duplicate_groups(texts, threshold) == _brute_force_groups(texts, threshold)


@settings(max_examples=150, deadline=None)
@given(text_lists(max_size=18), st.integers(min_value=0, max_value=18))
def test_appending_never_renames_unless_bridged(texts: list[str], cut: int) -> None:
    cut = min(cut, len(texts))
    old = near_duplicate_groups(texts[:cut])
    new = near_duplicate_groups(texts)
    # Anchors are the earliest member of their group.
    for i, g in enumerate(new):
        assert g <= i and new[g] == g
    for i in range(cut):
        assert new[i] <= old[i]  # an anchor can only move earlier
        merged = any(old[j] != old[i] and new[j] == new[i] for j in range(cut))
        if not merged:
            assert new[i] == old[i]


def test_five_thousand_texts_are_grouped() -> None:
    # How long this takes is measured by bench/pure_logic.py (the same texts).
    rng = random.Random(1234)
    vocab = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(3000)
    ]
    texts: list[str] = []
    for _ in range(5000):
        if texts and rng.random() < 0.2:
            chars = list(rng.choice(texts))
            chars[rng.randrange(len(chars))] = rng.choice(string.ascii_lowercase)
            texts.append("".join(chars))
        else:
            n = rng.choice([rng.randint(3, 25), rng.randint(25, 60), rng.randint(60, 150)])
            texts.append(" ".join(rng.choice(vocab) for _ in range(n)).capitalize() + "?")
    groups = near_duplicate_groups(texts)
    assert len(groups) == 5000
    assert 3000 < len(set(groups)) < 5000  # some, not all, texts were grouped


def test_large_cluster_of_near_identical_texts_is_one_group() -> None:
    # 3,000 long texts sharing a 100-word body: all one group. Per-pair work here would be quadratic;
    # bench/pure_logic.py measures it.
    rng = random.Random(99)
    vocab = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(2000)
    ]
    body = " ".join(rng.choice(vocab) for _ in range(100))
    texts = [f"{body} {' '.join(rng.choice(vocab) for _ in range(4))}" for _ in range(3000)]
    groups = near_duplicate_groups(texts)
    assert groups == [0] * 3000

"""The demo's support tickets: paraphrased, mostly without the queue's name, some ambiguous, a few mislabeled.

A prompted model and a fine-tuned one should be told apart by this data, so it is built the way real
tickets read: each queue has a few dozen situations written as people describe them ("the money left
my card twice", "the page spins forever after I sign in"), never naming the queue (``billing``,
``technical``, ``account``, ``shipping``) except in a small share of tickets; openers and sign-offs
carry no signal; about one ticket in eight describes two problems at once (its label is the one the
team's routing rule picks: the problem the customer asks to have solved, stated last); and about
3% of the labels are wrong, as in any hand-labeled set. The queue is learnable from a few hundred
examples, but not by spotting one word.

Deterministic for a seed (``random.Random(seed)``); ``python -m demo.tickets`` rewrites
``demo/data/support_tickets.jsonl``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

QUEUES: tuple[str, ...] = ("billing", "technical", "account", "shipping")

SITUATIONS: dict[str, list[str]] = {
    "billing": [
        "the money left my card twice for the same month",
        "I was charged {amount} but my plan costs less than that",
        "you took a payment after I cancelled in {month}",
        "the amount on my statement does not match what your site said at checkout",
        "I need a copy of last {month}'s receipt with our company address on it",
        "my bank shows a pending charge from you that I never approved",
        "the discount code was accepted but the full price was taken anyway",
        "we were moved to the yearly plan and paid for twelve months without being asked",
        "can you send the money back for the seats we removed in {month}",
        "the charge came through in dollars although we pay in euros",
        "your renewal went through on a card that expired, how is that possible",
        "I paid {amount} for an upgrade that never showed up on my plan",
        "our finance team needs the VAT number printed on every document you send",
        "there are three identical payments of {amount} on my credit card",
        "I asked for my money back {days} days ago and have heard nothing",
        "the price went up without any notice and I want the old rate",
        "why am I still paying for the premium tier after downgrading",
        "the direct debit failed and now there is a late fee I do not understand",
        "please change who the monthly statement is addressed to",
        "I got a reminder to pay something I already paid on {weekday}",
    ],
    "technical": [
        "the app closes by itself as soon as I open the reports page",
        "every time I upload a file bigger than {size} the page just spins",
        "since {weekday}'s update the screen stays white after I sign in",
        "the export to spreadsheet gives me an empty file",
        "the sync between my phone and laptop stopped, changes no longer show up",
        "I get error {code} whenever I save a draft",
        "the calendar widget shows the wrong times for everyone in our team",
        "your integration with our chat tool stopped posting messages {days} days ago",
        "the search returns nothing even for words I can see on the screen",
        "notifications arrive hours late or not at all on android",
        "the dashboard takes over a minute to load and then freezes the browser",
        "after the upgrade the charts are blank, the data is there in the table",
        "our script calling your service gets a timeout for every request since this morning",
        "the printer button does nothing, no dialog appears",
        "images I attach show up as broken icons for my colleagues",
        "the mobile version cuts off the bottom of every form so I cannot press submit",
        "dark mode makes half of the text invisible",
        "importing our contacts stops at {percent} percent every single time",
        "the offline mode lost everything I wrote on the train",
        "two of us editing the same document overwrite each other's changes",
    ],
    "account": [
        "I cannot get in, it says my details are wrong but I am sure they are right",
        "the six digit code never arrives on my phone so I am stuck at the sign in page",
        "my colleague left the company and we need her seat given to someone new",
        "I changed my email address and now nothing recognises me",
        "someone else seems to have signed in from {city}, please help me lock it down",
        "how do I add a second admin to our workspace",
        "I was blocked after typing the wrong code a few times",
        "please remove my profile and everything you keep about me",
        "the invitation link I got from my manager says it has expired",
        "I want to change the name shown on my profile but the field is greyed out",
        "we need to merge two logins that belong to the same person",
        "my access was switched off by mistake while I was on leave",
        "the reset link in your email takes me to a page that does not exist",
        "I lost my phone with the authenticator app on it",
        "how can I give a freelancer access to only one project",
        "it keeps asking me to verify my address even though I clicked the link",
        "I need to transfer ownership of our workspace to my successor",
        "my username still shows my maiden name and I want it updated",
        "we were told our organisation was suspended but nobody said why",
        "I signed up twice by accident and want one of them closed",
    ],
    "shipping": [
        "the box has not moved from the depot in {city} for {days} days",
        "the courier says it was delivered but nothing is at my door",
        "the order arrived with the corner crushed and the screen cracked",
        "the tracking page has said 'label created' since {weekday}",
        "it was sent to my old address even though I updated it before ordering",
        "customs are asking me for a fee nobody mentioned",
        "only two of the three items came, the third is missing from the parcel",
        "can I change the delivery day, I will be away until {weekday}",
        "the driver left it with a neighbour I have never met",
        "my order went back to your warehouse because nobody was home",
        "the estimated arrival keeps moving a week later",
        "I received someone else's order, what do I do with it",
        "I paid for next day delivery and it took {days} days",
        "the package was left out in the rain and everything inside is soaked",
        "can you ship to a pick-up point instead of my flat",
        "the replacement you promised has not been sent yet",
        "the courier's number on the tracking email is not answering",
        "the pallet for our office is too big for the lift, can it be split",
        "it says out for delivery for the third day running",
        "the return label you emailed will not scan at the post office",
    ],
}

# Tickets that mention two queues' problems; the label is the problem the customer asks to solve.
AMBIGUOUS: list[tuple[str, str]] = [
    ("the parcel never came and I still want my money back for it", "billing"),
    ("I was charged for delivery but the order was cancelled, the refund is what I need", "billing"),
    (
        "I paid twice because the checkout page froze, please fix the page so it does not happen again",
        "technical",
    ),
    ("after the app crashed I cannot sign in any more, my code is rejected", "account"),
    ("I cannot log in to check where my order is, can you just tell me when it arrives", "shipping"),
    ("the invoice link in your email throws an error, I only need the document", "billing"),
    ("since changing my email I no longer get the tracking updates, please fix my login details", "account"),
    ("the app shows my subscription as unpaid although the bank took the money", "billing"),
    ("the delivery address field will not save in the app so my orders go to the old flat", "technical"),
    ("my access was cut off when the card expired, I have paid now, please let me back in", "account"),
    ("the box arrived damaged and the app will not let me upload photos of it", "technical"),
    ("I was billed for a seat of a colleague who left, please remove her from our team", "account"),
]

# The queue's name in the text, as some customers write it (a small share of tickets).
NAMED = {
    "billing": ["this is a billing question:", "billing issue:"],
    "technical": ["technical problem:", "a technical issue:"],
    "account": ["account question:", "about my account:"],
    "shipping": ["shipping problem:", "question about shipping:"],
}

OPENERS = [
    "",
    "hi,",
    "hello team,",
    "good morning,",
    "hey,",
    "dear support,",
    "sorry to bother you again,",
    "quick one:",
    "I hope someone can help.",
    "urgent please:",
]
CONTEXT = [
    "",
    "",
    "",
    "I have been with you for {years} years.",
    "I tried the help pages first.",
    "my manager is asking for an update.",
    "this is the second time I write about it.",
    "we are a small team and rely on this.",
    "I am writing from my phone.",
]
CLOSERS = ["", "", "thanks", "thank you!", "regards", "cheers", "please advise.", "any help appreciated"]
SLOTS = {
    "amount": ["$49", "$120", "€35", "£18", "$9.99", "€240"],
    "month": ["January", "March", "May", "August", "October", "December"],
    "days": ["three", "five", "ten", "12", "two"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    "size": ["10 MB", "a few megabytes", "2 GB", "50 MB"],
    "code": ["500", "E-1042", "403", "0x80004005"],
    "percent": ["40", "73", "99", "12"],
    "city": ["Lyon", "Leeds", "Austin", "Porto", "Berlin", "Osaka"],
    "years": ["2", "five", "10", "three"],
}
NAMED_SHARE = 0.12
AMBIGUOUS_SHARE = 0.12
LABEL_ERROR_RATE = 0.03


def _fill(rng: random.Random, text: str) -> str:
    for slot, values in SLOTS.items():
        while "{" + slot + "}" in text:
            text = text.replace("{" + slot + "}", rng.choice(values), 1)
    return text


def _ticket(rng: random.Random, body: str, queue: str) -> str:
    if rng.random() < NAMED_SHARE:
        body = f"{rng.choice(NAMED[queue])} {body}"
    parts = [
        rng.choice(OPENERS),
        _fill(rng, rng.choice(CONTEXT)),
        _fill(rng, body) + ".",
        rng.choice(CLOSERS),
    ]
    if rng.random() < 0.5:
        parts[1], parts[2] = parts[2], parts[1]
    text = " ".join(p for p in parts if p)
    return text[0].upper() + text[1:] if rng.random() < 0.6 else text.lower()


def tickets(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` tickets, balanced over :data:`QUEUES`, with ``input``, ``label`` and ``kind``.

    ``kind`` is ``plain``, ``ambiguous`` or ``mislabeled`` (the label then is a wrong queue), so a
    reader can check what the data holds; only ``input`` and ``label`` are imported.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        queue = QUEUES[i % len(QUEUES)]
        kind = "plain"
        if rng.random() < AMBIGUOUS_SHARE:
            body, queue = rng.choice(AMBIGUOUS)
            kind = "ambiguous"
        else:
            body = rng.choice(SITUATIONS[queue])
        label = queue
        if rng.random() < LABEL_ERROR_RATE:
            label = rng.choice([q for q in QUEUES if q != queue])
            kind = "mislabeled"
        rows.append({"input": _ticket(rng, body, queue), "label": label, "kind": kind})
    rng.shuffle(rows)
    return rows


def main() -> None:
    out = Path(__file__).parent / "data" / "support_tickets.jsonl"
    out.write_text("".join(json.dumps(row) + "\n" for row in tickets(480, seed=15)))


if __name__ == "__main__":
    main()

"""A crypto-news layer for the sentiment models: cue lexicons and domain training headlines.

The tweets the models learn from (Twitter Financial News) are mostly about equities; headlines about crypto
use words they rarely contain (hacks, exploits, rug pulls, withdrawal freezes, bans, depegs, ETF approvals,
inflows, upgrades, halvings) and read "soar", "double" or "plunge" the same way. Two things close the gap:

* :func:`cue_counts` - counts of bullish and bearish **cues** (regular expressions over the lower-cased text,
  with a short negation rule: "not a security", "no hack", "denies ..." flip or drop a cue). They enter the
  model as features beside the TF-IDF n-grams, so the logistic regression learns how far to trust them.
* :func:`domain_headlines` - crypto headlines generated from hand-written templates (assets x events x
  phrasings; deterministic), labelled by the template's class. They are training data only. None of them is
  in the frozen evaluation set ``tests/data/crypto_headlines.csv`` (the tests check that), and that set was
  written and committed before this module.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable
from typing import Final

import numpy as np
import pandas as pd

__all__ = ["BEARISH_CUES", "BULLISH_CUES", "cue_counts", "domain_headlines"]

BEARISH_CUES: Final = (
    r"hack(?:ed|er|ers|s)?\b",
    r"exploit(?:ed|s)?\b",
    r"breach(?:ed|es)?\b",
    r"drain(?:ed|s)?\b",
    r"stol(?:e|en)\b|\bthe(?:ft|fts)\b|\bsteal",
    r"phishing|scam|fraud|ponzi|rug pull|money laundering|launder",
    r"sues?\b|\bsued\b|lawsuit|\bcharge[sd]?\b|indict|arrest|subpoena|probe\b|crackdown|sanction",
    r"\bbans?\b|\bbanned\b|\bbanning\b|prohibit|outlaw|restrict",
    r"(?:freez|froze|halt|suspend|paus|block|stop)\w*\s+(?:\w+\s+){0,2}(?:withdrawal|deposit|redemption|trading)",
    r"(?:withdrawal|deposit|redemption)s?\s+(?:\w+\s+){0,2}(?:frozen|halted|suspended|paused)",
    r"outflows?",
    r"crash(?:es|ed|ing)?\b|plung|plummet|tumbl|slump|sink|\bsank\b|slid(?:e|es|ing)?\b|nosediv|tank(?:s|ed)?\b",
    r"\bdrops?\b|\bdropped\b|\bfall(?:s|ing)?\b|\bfell\b|\bdips?\b|\bslips?\b|\bsheds?\b|\blos(?:e|es|ing|t)\b|crater|collaps|implod|wipe[sd]? out",
    r"sell-?off|selloff|panic|capitulat|liquidat|bloodbath|rout\b|bear(?:ish)?\b|fear\b|extreme fear",
    r"bankrupt|insolven|chapter 11|default(?:s|ed)?\b|shut(?:s|ting)? down|wind(?:s)? down|lay(?:s)? off|layoffs|job cuts",
    r"depeg|loses? (?:its )?(?:dollar )?peg|de-peg",
    r"delist|reject(?:s|ed)?\b|den(?:y|ies|ied)\b|deni(?:al)|delay(?:s|ed)?\b|postpone",
    r"outage|goes down|went down|halts? block|stall|congest|bug\b|flaw|vulnerab|compromis|slash(?:ing|ed)",
    r"warn(?:s|ing|ed)?\b|risk(?:y|s)?\b|concern|doubt|fears?\b|worr",
    r"\blows?\b|\blowest\b|weak|miss(?:es|ed)?\b|loss(?:es)?\b|dr(?:y|ies) up|dried up|fad(?:e|es|ing)\b",
    r"seiz(?:e|es|ed|ure)|cuts? ties|tax(?:es)? on|illegal|unregistered",
    r"bleed|goes bust|went bust|\bbust\b|refus|cyberattack|attack(?:s|ed)?\b|suit against|files suit|abandon|dump(?:s|ed)?\b",
    r"wobbl|head for the exits|rush for the exits|weakest|worst|unpaid|shortfall|hole in",
)
"""Bearish cues (regular expressions, searched in the lower-cased text)."""

BULLISH_CUES: Final = (
    r"soar|surg|skyrocket|rocket|rall(?:y|ies|ied)|jump|spike|climb|gain(?:s|ed)?\b|rise[sn]?\b|\brose\b|rebound|recover",
    r"doubl(?:e|es|ed)|tripl(?:e|es|ed)|quadrupl|\d+x\b|moon",
    r"record high|all-time high|new high|ath\b|milestone|tops?\b|best (?:month|week|day|quarter|year)",
    r"breaks? (?:out|above|through)|breakout|reclaim|bull(?:ish|s)?\b|momentum|outperform|squeez",
    r"inflows?|pour(?:s|ed)? (?:money|cash|capital)|fresh capital|accumulat|\bbuy(?:s|ing)?\b|bought|adds? (?:\w+ )?(?:bitcoin|btc|ether)",
    r"approv(?:e|es|ed|al)|green light|greenlight|licen[cs]e|legal tender|clear (?:regulatory )?framework|friendl",
    r"launch(?:es|ed)?\b|listing debut|lists?\b|integrat|adopt|partner|accept(?:s|ed)?\b|lets?\b|allow(?:s|ed)?\b|opens? (?:\w+ )?(?:to|trading)",
    r"upgrade|hard fork|go(?:es)? live|went live|mainnet|cuts? (?:\w+ )?fees|cheaper|faster",
    r"dismiss(?:es|ed)?\b|drops? (?:its |the )?(?:case|charges|investigation|lawsuit|probe)|win\b|wins\b|victory|not a security",
    r"record (?:profit|inflow|volume|activity|user|demand|deposit)|boom|growth|grows?\b|strong(?:ly)?\b|blowout|beat(?:s)?\b",
    r"returned|recovered funds|refund|cheer|optimis|boost",
    r"signs? off|throws? out|rolls? out|lifts? (?:its |the )?ban|attract|pile in|fresh money|endors|settlement",
    r"record\b|yearly high|multi-year high|first time in|resumes|treasury",
)
"""Bullish cues (regular expressions, searched in the lower-cased text)."""

_NEGATORS: Final = re.compile(r"\b(?:not|no|never|denies|denied|without|halts? plans? to)\s+(?:\w+\s+){0,2}$")
_BEAR: Final = tuple(re.compile(r"(?:(?<=\W)|^)" + p) for p in BEARISH_CUES)
_BULL: Final = tuple(re.compile(r"(?:(?<=\W)|^)" + p) for p in BULLISH_CUES)


def _count(text: str, cues: tuple[re.Pattern[str], ...]) -> tuple[int, int]:
    """(cues found, cues found right after a negation) in ``text``."""
    hit = neg = 0
    for rx in cues:
        for m in rx.finditer(text):
            if _NEGATORS.search(text[max(0, m.start() - 40) : m.start()]):
                neg += 1
            else:
                hit += 1
    return hit, neg


def cue_counts(texts: Iterable[str]) -> np.ndarray:
    """(N, 4) float array: bullish cues, bearish cues, negated bullish, negated bearish (per text).

    A negated cue counts on the other side ("not a security" is a bearish cue negated, so bullish).
    """
    rows = []
    for t in texts:
        s = " " + str(t).lower() + " "
        bull, nbull = _count(s, _BULL)
        bear, nbear = _count(s, _BEAR)
        rows.append((bull + nbear, bear + nbull, nbull, nbear))
    return np.asarray(rows, dtype=float).reshape(-1, 4)


_ASSETS: Final = (
    "Bitcoin",
    "BTC",
    "Ether",
    "Ethereum",
    "Solana",
    "XRP",
    "Cardano",
    "Dogecoin",
    "Litecoin",
    "Polkadot",
    "Chainlink",
    "BNB",
    "Tron",
    "Near",
    "Aptos",
    "Sui",
    "Pepe",
    "Cosmos",
    "Stellar",
    "Monero",
)
_VENUES: Final = (
    "crypto exchange",
    "a major exchange",
    "the exchange",
    "a crypto lender",
    "DeFi protocol",
    "a lending protocol",
    "a bridge",
    "a wallet provider",
    "a crypto broker",
    "a derivatives venue",
    "a staking service",
    "a token issuer",
)
_PLACES: Final = ("US", "UK", "EU", "Japan", "Korea", "Canada", "Australia", "Turkey", "Russia", "Argentina")
_PCT: Final = ("5%", "9%", "14%", "22%", "35%", "60%")
_MONEY: Final = ("$15 million", "$60 million", "$300 million", "$1.4 billion", "$2 billion")

_TEMPLATES: Final = {
    "bearish": (
        "{venue} hacked, attackers make off with {money}",
        "attacker exploits {venue} and siphons {money} in tokens",
        "{venue} suffers security breach, user funds at risk",
        "{venue} suspends withdrawals amid solvency fears",
        "{venue} freezes user accounts and halts redemptions",
        "regulators in {place} sue {venue} over unregistered offerings",
        "{place} authorities charge {venue} executives with fraud",
        "{place} moves to ban crypto trading for retail users",
        "{place} central bank prohibits payments in crypto",
        "{asset} plunges {pct} as sellers take over",
        "{asset} crashes {pct} in a violent sell-off",
        "{asset} tumbles to a multi-month low",
        "{asset} slides {pct} after weak demand",
        "{asset} sinks as traders dump their holdings",
        "{asset} funds post record outflows of {money}",
        "investors pull {money} from {asset} products",
        "{asset} longs liquidated as price nosedives",
        "{asset} network outage stalls transactions for hours",
        "{venue} files for bankruptcy after losses",
        "{venue} becomes insolvent, customers face losses",
        "stablecoin depegs and drops to 90 cents",
        "{venue} delists {asset} after regulatory pressure",
        "{place} regulator rejects {asset} fund application",
        "scammers steal {money} from {asset} holders",
        "{asset} price falls {pct} after token unlock",
        "{venue} cuts jobs as volumes collapse",
        "bug in {asset} smart contract freezes {money}",
        "police in {place} arrest founder of {venue}",
    ),
    "bullish": (
        "{asset} soars {pct} to a fresh record high",
        "{asset} surges {pct} as buyers return",
        "{asset} rallies {pct} on heavy demand",
        "{asset} jumps {pct} after upbeat news",
        "{asset} price doubles in weeks",
        "{asset} triples since the start of the year",
        "{asset} hits an all-time high",
        "{asset} funds see record inflows of {money}",
        "investors pour {money} into {asset} products",
        "{place} regulator approves spot {asset} ETF",
        "{place} gives green light to {asset} fund",
        "{asset} upgrade goes live, cutting fees",
        "{asset} mainnet launch succeeds",
        "{venue} wins license in {place}",
        "{place} adopts clear rules that welcome crypto",
        "court dismisses case against {venue}",
        "regulator drops its probe into {asset}",
        "big retailer starts accepting {asset} for payments",
        "payments giant integrates {asset} for merchants",
        "{asset} breaks out above resistance",
        "{asset} rebounds strongly after dip",
        "public company buys {money} worth of {asset}",
        "{asset} staking hits record high",
        "{venue} reports record profit",
        "{asset} climbs {pct} as shorts get squeezed",
        "{venue} lists {asset} and the token spikes",
        "{asset} posts its best week in months",
        "bank in {place} launches {asset} trading for clients",
    ),
    "neutral": (
        "{venue} appoints a new chief executive",
        "{venue} hires head of compliance",
        "{asset} developers set date for next testnet",
        "{asset} conference to be held in {place} next month",
        "{asset} trades sideways ahead of data",
        "{asset} little changed in quiet trading",
        "{asset} holds steady near last week's level",
        "{asset} flat as traders wait for the Fed",
        "{venue} publishes quarterly report",
        "{venue} releases monthly reserve attestation",
        "{venue} to update its terms of service",
        "{venue} schedules system maintenance",
        "{place} regulator opens consultation on crypto rules",
        "{place} lawmakers to debate digital asset bill next week",
        "{asset} community votes on governance proposal",
        "what to watch in {asset} this week",
        "explainer: how {asset} staking works",
        "{asset} options expire on Friday",
        "{venue} moves office to {place}",
        "{venue} rebrands with a new logo",
        "{asset} foundation announces grant round",
        "{asset} core team publishes roadmap",
        "analysts divided on {asset} outlook",
        "{venue} adds new trading pairs",
        "{asset} network difficulty adjusts",
        "interview with {asset} co-founder",
        "{place} publishes report on stablecoins",
        "{venue} to present at fintech event in {place}",
    ),
}


def domain_headlines(n_per_template: int = 6, seed: int = 0) -> pd.DataFrame:
    """Crypto headlines from the templates as ``[text, label]`` (label -1/0/+1), deterministic for ``seed``.

    Each template is filled ``n_per_template`` times with assets, venues, places, percentages and sums drawn
    without bias; duplicates are dropped.
    """
    rng = random.Random(seed)
    rows = []
    for label, templates in _TEMPLATES.items():
        score = {"bearish": -1, "neutral": 0, "bullish": 1}[label]
        for tpl, _ in itertools.product(templates, range(n_per_template)):
            text = tpl.format(
                asset=rng.choice(_ASSETS),
                venue=rng.choice(_VENUES),
                place=rng.choice(_PLACES),
                pct=rng.choice(_PCT),
                money=rng.choice(_MONEY),
            )
            rows.append((text[0].upper() + text[1:], score))
    df = pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates("text")
    return df.reset_index(drop=True)

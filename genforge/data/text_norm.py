"""English text normalisation before phonemes: what a reader says for numbers, ordinals, currency,
percentages, times and common abbreviations ("Dr. Smith paid $3.50 on the 21st" -> "Doctor Smith
paid three dollars and fifty cents on the twenty-first"). espeak-ng reads plain numbers itself but
reads "$3.50" as "dollar three point five zero"; saying them here makes teacher and model agree.

The rules follow the LJSpeech normaliser's (Keith Ito's `tacotron` cleaners: abbreviations,
currency, ordinals, numbers) and the pronunciations of `num2words` for English.
"""
from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}
ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "co": "company",
                 "jr": "junior", "sr": "senior", "maj": "major", "gen": "general", "capt": "captain", "lt": "lieutenant",
                 "col": "colonel", "sgt": "sergeant", "rev": "reverend", "prof": "professor", "hon": "honorable",
                 "ft": "fort", "mt": "mount", "etc": "et cetera", "vs": "versus", "no": "number"}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}


def cardinal(n: int) -> str:
    """The English words of a non-negative integer: 1984 -> "one thousand nine hundred eighty-four"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + cardinal(n % 100) if n % 100 else "")
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return cardinal(n // scale) + " " + name + (" " + cardinal(rest) if rest else "")
    raise AssertionError(n)


def ordinal(n: int) -> str:
    """21 -> "twenty-first"."""
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words.split(" ")[-1] else words.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year(n: int) -> str:
    """How a year is read: 1984 -> "nineteen eighty-four", 2000 -> "two thousand", 1905 -> "nineteen oh five"."""
    if 2000 <= n < 2010 or n % 1000 == 0 or not 1100 <= n < 2100:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return cardinal(hi) + " hundred"
    return cardinal(hi) + (" oh " + _ONES[lo] if lo < 10 else " " + cardinal(lo))


def _money(m: re.Match) -> str:
    one, many, cent, cents = _CURRENCY[m.group(1)]
    whole = int(m.group(2).replace(",", ""))
    frac = int((m.group(3) or "0").ljust(2, "0")[:2])
    parts = []
    if whole or not frac:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if frac:
        parts.append(f"{cardinal(frac)} {cent if frac == 1 else cents}")
    return " and ".join(parts)


def _decimal(m: re.Match) -> str:
    return cardinal(int(m.group(1).replace(",", ""))) + " point " + " ".join(_ONES[int(d)] for d in m.group(2))


def _number(m: re.Match) -> str:
    text = m.group(0)
    n = int(text.replace(",", ""))
    if "," not in text and len(text) == 4 and 1100 <= n < 2100:
        return year(n)
    return cardinal(n)


def _time(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    said = cardinal(hour) + (" o'clock" if minute == 0 else (" oh " if minute < 10 else " ") + cardinal(minute))
    return said.replace(" oh zero", "")


_ABBREV = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.(?=\s|$)", re.IGNORECASE)
_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d+))?")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_ORD = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_DECIMAL = re.compile(r"\b(\d[\d,]*)\.(\d+)\b")
_INT = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """text as it is read aloud: abbreviations, currency, percentages, times, ordinals, decimals
    and integers (4-digit numbers from 1100 to 2099 as years) spelt out; whitespace collapsed."""
    text = _ABBREV.sub(lambda m: _case(m.group(1), ABBREVIATIONS[m.group(1).lower()]), text)
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(lambda m: m.group(1) + " percent", text)
    text = _TIME.sub(_time, text)
    text = _ORD.sub(lambda m: ordinal(int(m.group(1))), text)
    text = _DECIMAL.sub(_decimal, text)
    text = _INT.sub(_number, text)
    text = text.replace("&", " and ")
    return _SPACES.sub(" ", text).strip()


def _case(abbr: str, word: str) -> str:
    return word.capitalize() if abbr[0].isupper() else word

"""Answer reading for the benchmarks without an official per-answer rule (SEED-Bench, MMVP letters; HallusionBench
yes/no without a judge), and the LLaVA-1.5 option layout. Benchmarks with an official scorer port it in their own
module instead.

Reading is deterministic (no random fallback): an answer we cannot read scores as wrong, and the per-sample JSONL
keeps the raw text so the reading can be audited.
"""

import re


LETTERS = "ABCDEFGHIJ"
_ONLY_LETTER = re.compile(r"^\(?([A-J])\)?[.:)]?$")
_LEADING_LETTER = re.compile(r"^\(?([A-J])(?:[.:)]|\s*$)")
# Keywords in any case, the letter itself upper-case only ("the answer is a cat" picks nothing).
_ANSWER_IS = re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*[:：]?\s*\(?([A-J])\b")
_ANSWER_IS_CN = re.compile(r"(?:答案|选项)\s*(?:是|为|：|:)?\s*\(?([A-J])\b")
_PARENTHESISED = re.compile(r"\(([A-J])\)")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def extract_choice(answer: str, options: dict[str, str]) -> str:
    """The option letter an answer picks, or "" when it cannot be told.

    Tried in order: a bare letter ("B", "(B)", "B."), a leading letter ("B. the cat"), "the answer is B",
    a single parenthesised letter anywhere, then the one option whose text the answer equals or contains.
    """
    text = answer.strip()
    if not text:
        return ""
    first_line = text.splitlines()[0].strip()
    for pattern in (_ONLY_LETTER, _LEADING_LETTER):
        match = pattern.match(first_line)
        if match and match.group(1) in options:
            return match.group(1)
    for pattern in (_ANSWER_IS, _ANSWER_IS_CN):
        found = [letter for letter in pattern.findall(text) if letter in options]
        if found:
            return found[-1]
    parenthesised = {letter for letter in _PARENTHESISED.findall(text) if letter in options}
    if len(parenthesised) == 1:
        return parenthesised.pop()
    normalized = _norm(text)
    option_texts = {letter: _norm(str(option)) for letter, option in options.items() if _norm(str(option))}
    exact = [letter for letter, option in option_texts.items() if option == normalized]
    if len(exact) == 1:
        return exact[0]
    contained = [
        letter for letter, option in option_texts.items() if re.search(rf"\b{re.escape(option)}\b", normalized)
    ]
    # Prefer the longest option text when one option's text is part of another's ("red" in "dark red").
    if contained:
        longest = max(contained, key=lambda letter: len(option_texts[letter]))
        if all(option_texts[letter] in option_texts[longest] for letter in contained):
            return longest
    return ""


def extract_yes_no(answer: str) -> str:
    """'yes', 'no', or '' when the answer says neither (or both, without leading with one)."""
    words = re.findall(r"[a-z]+", answer.lower())
    if not words:
        return ""
    if words[0] in ("yes", "no"):
        return words[0]
    found = {word for word in words if word in ("yes", "no")}
    return found.pop() if len(found) == 1 else ""


def options_block(options: dict[str, str]) -> str:
    """'A. first\\nB. second' — the LLaVA-1.5 option layout."""
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())

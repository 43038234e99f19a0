"""The refiner's chat prompt: compact, so prompt + report fit a 256-token window on CPU. Fields are cut
by words before tokenising so the chat template itself is never truncated."""
from __future__ import annotations

from xr.refine.examples import RefineExample
from xr.refine.guard import without_mark

INSTRUCTION = "Rewrite the draft as the final chest X-ray report (FINDINGS and IMPRESSION)."
SYSTEM = "You edit chest X-ray report drafts."  # short: the template's default system line costs 25 tokens
DRAFT_WORDS, SIMILAR_WORDS, N_SIMILAR = 70, 20, 2
MIN_TARGET_TOKENS = 48


def _cut(text: str, words: int) -> str:
    w = " ".join(text.split()).split(" ")
    return " ".join(w[:words]) + (" ..." if len(w) > words else "")


def user_message(ex: RefineExample) -> str:
    lines = [f"Indication: {_cut(ex.indication, 20) or 'none'}"]
    likely = sorted(((p, f) for f, p in ex.findings.items() if p >= 0.2 and f != "No Finding"), reverse=True)
    if ex.findings:
        lines.append("Likely findings: " + (", ".join(f"{f} {p:.1f}" for p, f in likely) or "none"))
    lines += [f"Similar report: {_cut(s, SIMILAR_WORDS)}" for s in ex.similar[:N_SIMILAR]]
    lines += [f"Draft: {_cut(ex.draft, DRAFT_WORDS)}", INSTRUCTION]
    return "\n".join(lines)


def prompt_ids(tok, ex: RefineExample) -> list[int]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_message(ex)}]
    return list(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def training_ids(tok, ex: RefineExample, max_len: int = 256) -> tuple[list[int], list[int]]:
    """(input_ids, labels): loss only on the report (less its sentences with the mark) and its end-of-turn
    token; the report is cut to fit max_len, and the prompt too when even the report's minimum would not."""
    prompt = prompt_ids(tok, ex)
    target = tok(without_mark(ex.target), add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    if len(prompt) + MIN_TARGET_TOKENS > max_len:
        prompt = prompt[: max_len - MIN_TARGET_TOKENS]
    target = target[: max_len - len(prompt)]
    return prompt + target, [-100] * len(prompt) + target

"""Tokenizers: the offline byte-level BPE for tiny models, special tokens and the InternVL chat prompt."""

from __future__ import annotations

import itertools

import numpy as np

from reviosa.model.config import ModelConfig

SEG_ACT = "[SEG_ACT]"
SEG_TAR = "[SEG_TAR]"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|endoftext|>"
SEG_TOKENS = (SEG_ACT, SEG_TAR)
#: strings the tokenizer turns into template/image/answer tokens: never allowed inside a user's expression
CONTROL_TOKENS = (IMG_START, IMG_END, IMG_CONTEXT, IM_START, IM_END, PAD, *SEG_TOKENS)

# Words of synthetic-world expressions; anything else still tokenises through the byte alphabet.
_WORDS = {
    "shapes": "circle square triangle star diamond hexagon pentagon cross heart ellipse rectangle ring shape object",
    "colours": "red green blue yellow orange purple pink cyan magenta white black gray grey brown",
    "sizes": "small medium large big tiny little biggest smallest larger smaller",
    "motions": "still left right up down bouncing rotating moving moves move staying stays static spinning spins "
               "falling rising going goes toward towards away from across around with",
    "interactions": "chases chasing chased pushes pushing pushed hits hitting hit follows following followed "
                    "circles circling moves_with moving_with together another other",
    "grammar": "the a an that which who is are being by of to in on at and it this video frame first second "
               "please segment provide separate segmentation masks mask for each if both subject present sure "
               "one two three",
}


# The chat turns the tiny tokenizer's merges were learnt from. Fixed here, not read from a config, so that changing
# a prompt never changes the tokenizer (and with it every tiny model's vocabulary).
_TINY_CORPUS_TURNS = ("Please segment {expression} in this video. If both a subject and an object are present, "
                      "please provide separate segmentation masks for each.",
                      "Sure, it is [SEG_ACT].", "Sure, it is [SEG_ACT] and [SEG_TAR].")


def build_tiny_tokenizer():
    """A byte-level BPE trained in code on synthetic-world words (deterministic, no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(" ".join(_WORDS.values()).split()))
    corpus = ([" ".join(p) for p in itertools.permutations(words[:8], 3)] + [f"the {w} ." for w in words]
              + [*_TINY_CORPUS_TURNS, "user", "assistant"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[PAD, IM_START, IM_END])
    tok.train_from_iterator(corpus * 2, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=IM_END)
    fast.add_special_tokens({"additional_special_tokens": [IMG_START, IMG_END, IMG_CONTEXT]})
    return fast


def add_seg_tokens(tokenizer) -> dict[str, int]:
    """Add ``[SEG_ACT]``/``[SEG_TAR]`` as special tokens (idempotent); returns the ids of all model tokens."""
    missing = [t for t in SEG_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return token_ids(tokenizer)


def token_ids(tokenizer) -> dict[str, int]:
    """Ids of the tokens the model needs, checked to exist as single tokens."""
    out = {}
    for t in (SEG_ACT, SEG_TAR, IMG_START, IMG_END, IMG_CONTEXT, IM_END):
        ids = tokenizer.encode(t, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"tokenizer does not hold {t!r} as one token (got {ids})")
        out[t] = ids[0]
    return out


def frame_block(n_frames: int, tokens_per_frame: int) -> str:
    """The image part of the first user turn: one ``<img>…</img>`` block per frame, joined by newlines."""
    one = IMG_START + IMG_CONTEXT * tokens_per_frame + IMG_END
    return "\n".join([one] * n_frames)


def _pick(options: list[str], rng: np.random.Generator | None) -> str:
    """The first option, or one drawn by ``rng`` when there is a choice."""
    return options[0] if rng is None or len(options) == 1 else options[int(rng.integers(len(options)))]


def question_text(cfg: ModelConfig, expression: str, rng: np.random.Generator | None = None,
                  inference: bool = False) -> str:
    """The question for one expression: the inference question, or a training template + postfix (drawn by
    ``rng``). The expression loses its trailing period and is lower-cased; one that is a question is asked as is."""
    exp = expression.strip().rstrip(".").lower()
    if not exp:
        raise ValueError("the referring expression is empty")
    reserved = control_tokens_in(expression)
    if reserved:
        raise ValueError(f"the referring expression contains reserved token(s) {reserved}")
    if exp.endswith("?"):
        return exp
    p = cfg.prompt
    if inference:
        return p.inference_question.format(expression=exp)
    return _pick(p.questions, rng).format(expression=exp) + _pick(p.postfixes, rng)


def control_tokens_in(text: str) -> list[str]:
    """The reserved chat/image/answer tokens spelled inside ``text`` (case-insensitive, as questions are lowered)."""
    low = text.lower()
    return [t for t in CONTROL_TOKENS if t.lower() in low]


def answer_text(cfg: ModelConfig, has_target: bool, rng: np.random.Generator | None = None) -> str:
    """The supervised answer (a form drawn by ``rng``, else the first): ``[SEG_ACT]``, and ``[SEG_TAR]`` after it for
    interaction expressions."""
    return _pick(cfg.prompt.answers_interaction if has_target else cfg.prompt.answers_actor, rng)


def user_turn(text: str) -> str:
    """One user turn of the InternVL-2.5 (Qwen) chat template, opening the assistant reply."""
    return f"{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n"


def encode_conversation(tokenizer, cfg: ModelConfig, n_frames: int, expressions: list[str], answers: list[str] | None,
                        rng: np.random.Generator | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels (−100 on prompts) of a multi-round chat.

    With ``answers`` it is a training chat (questions drawn by ``rng``); ``answers=None`` asks the inference question
    and leaves the reply open.
    """
    ids: list[int] = []
    labels: list[int] = []
    images = frame_block(n_frames, cfg.mllm.tokens_per_frame)
    for i, exp in enumerate(expressions):
        question = question_text(cfg, exp, rng, inference=answers is None)
        prompt = user_turn((images + "\n" if i == 0 else "") + question)
        p = tokenizer.encode(prompt, add_special_tokens=False)
        ids += p
        labels += [-100] * len(p)
        if answers is None:
            if i != len(expressions) - 1:
                raise ValueError("an open reply is only possible on the last round")
            break
        a = tokenizer.encode(answers[i] + IM_END, add_special_tokens=False)
        ids += a
        labels += a
        sep = tokenizer.encode("\n", add_special_tokens=False)
        ids += sep
        labels += [-100] * len(sep)
    return ids, labels

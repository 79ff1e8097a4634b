"""A GPT-2-style byte-level BPE tokenizer (Phi-2's kind), built offline, and an ALLaVA processor around it.

Unlike `recipes.tiny.models`'s tokenizer, which isolates every space, this one uses GPT-2's pre-tokenizer regex, so
a space merges into the next word (`' A'` -> `'ĠA'`): tokenising a chat as one string then differs from tokenising it
turn by turn, the way ALLaVA's own code and our training rows do.
"""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from modeling_allava import AllavaProcessor, build_image_processor
from modeling_allava.processing_allava import CHAT_TEMPLATES


SPECIAL_TOKENS = ["<|endoftext|>", "<image>", "<|user|>", "<|assistant|>", "<|end|>", "<|system|>"]
_SENTENCES = [
    "[INST] What is this? [/INST] A red circle.",
    "[INST] How many shapes? [/INST] One blue square and a red circle.",
    "A green star is next to a red circle.",
    "Are you sure? Yes, one.",
]


def build_byte_level_bpe() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's regex
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_SENTENCES * 3, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=SPECIAL_TOKENS[1:],
    )


def build_byte_level_processor(template: str) -> AllavaProcessor:
    """`template` is a key of CHAT_TEMPLATES; images are 56 px with patch 14 and CLS dropped: 16 tokens each."""
    return AllavaProcessor(
        image_processor=build_image_processor(56),
        tokenizer=build_byte_level_bpe(),
        chat_template=CHAT_TEMPLATES[template],
    )

"""lmms-eval model plugin, so users of that harness can run `lmms-eval --model allava --model_args pretrained=...`.

lmms-eval finds the model through the `lmms_eval.models` entry point (`allava = recipes.lmms_eval_plugin:manifest`,
see docs/evaluation.md). It is an optional extra: lmms_eval is imported only when lmms-eval itself asks for the
model class, so nothing else in this repo needs it installed. The model logic lives in `AllavaLmms`, written against
the lmms-eval 0.7 "simple model" API and usable without it:
- `generate_until(requests)`: each `request.args` is `(context, gen_kwargs, doc_to_visual, doc_id, task, split)`;
  the images are `doc_to_visual(self.task_dict[task][split][doc_id])`; returns one string per request.
- `loglikelihood(requests)`: `request.args` is `(context, continuation or doc_to_target, doc_to_visual, doc_id,
  task, split)`; returns `(sum of continuation log-probs, whether greedy decoding reproduces it)` per request.

Under lmms-eval's own multi-process launch (`accelerate launch -m lmms_eval ...` or torchrun), lmms-eval gives each
process every world_size-th document and gathers the answers on rank 0; like its own models, the plugin takes its
rank, world size and device from the launch (accelerate's process state): one GPU per process (cuda:LOCAL_RANK), or
CPU processes over gloo.
"""

import torch

from modeling_allava import load_image
from recipes.benchmarks.batching import prompt_lengths
from recipes.benchmarks.common import Sample
from recipes.benchmarks.generation import generate, load_model
from recipes.benchmarks.shares import process_state


MODEL_NAME = "allava"


class AllavaLmms:
    """An ALLaVA (or any chat-templated image-text-to-text) checkpoint behind lmms-eval's model interface."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_new_tokens: int = 256,
        max_batch_size: int | None = None,  # passed by lmms-eval for auto batch sizes, which we do not do
        trust_remote_code: bool | str = False,  # only non-ALLaVA checkpoints that ship their own code need it
    ):
        super().__init__()  # lmms-eval's base class sets rank, world size, cache hook and task_dict
        if str(batch_size).startswith("auto"):
            raise ValueError("allava: batch_size must be a number; automatic batch sizes are not supported.")
        trusted = str(trust_remote_code).lower() in ("true", "1", "yes")
        state = process_state(device)  # the launch lmms-eval's own Accelerator already joined, or one process
        self._rank, self._world_size = state.process_index, state.num_processes
        if state.num_processes > 1 and not str(device or "").startswith("cpu"):
            device = str(state.device)  # lmms-eval passes one device (default cuda) to every process
        self.model, self.processor = load_model(pretrained, dtype=dtype, device=device, trust_remote_code=trusted)
        self._device = self.model.device
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        if not hasattr(self, "task_dict"):
            self.task_dict = {}

    @property
    def device(self) -> torch.device:
        """Where this process's model runs; lmms-eval's evaluator puts its per-rank request counts here to gather."""
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """lmms-eval's constructor path, which would pass its own `batch_size`/`device` next to the same keys in
        `--model_args` (a TypeError: multiple values). A key given in `--model_args` wins over lmms-eval's."""
        # Keys only: lmms-eval parses the values (and JSON values with commas) itself in the base method.
        given = {part.split("=", 1)[0].strip() for part in arg_string.split(",") if "=" in part}
        extra = {key: value for key, value in (additional_config or {}).items() if key not in given}
        return super().create_from_arg_string(arg_string, extra)

    def _sample(self, context: str, doc_to_visual, doc_id, task, split) -> Sample:
        """Context text plus the document's images; a literal `<image>` in task text is dropped (we place it)."""
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else []
        images = [load_image(v, where=f"{task}/{split}/{doc_id} visual[{i}]") for i, v in enumerate(visuals or [])]
        return Sample(id=str(doc_id), prompt=context.replace("<image>", "").strip(), images=images)

    def _budget(self, gen_kwargs: dict) -> int:
        return int(gen_kwargs.get("max_new_tokens", self.max_new_tokens))

    def _batches(self, arguments: list[tuple]) -> list[list[int]]:
        """Request positions batched as lmms-eval's own models batch them: only requests with the same token budget
        together (a batch shares one; lmms-eval hands over the requests of all tasks at once), longest context first
        within a budget, so that batches are even and the first one shows at once whether memory suffices."""
        budgets = [self._budget(gen_kwargs) for _, gen_kwargs, *_ in arguments]
        contexts = [context for context, *_ in arguments]
        lengths = prompt_lengths(self.processor.tokenizer, contexts)
        batches: list[list[int]] = []
        for position in sorted(range(len(arguments)), key=lambda i: (budgets[i], -lengths[i], i)):
            last = batches[-1] if batches else None
            if last and len(last) < self.batch_size and budgets[last[0]] == budgets[position]:
                last.append(position)
            else:
                batches.append([position])
        return batches

    def generate_until(self, requests) -> list[str]:
        arguments = [request.args for request in requests]
        answers = [""] * len(arguments)
        for batch in self._batches(arguments):
            samples = [self._sample(arguments[i][0], *arguments[i][2:]) for i in batch]
            outputs = generate(self.model, self.processor, samples, self._budget(arguments[batch[0]][1]))
            for position, output in zip(batch, outputs):
                until = arguments[position][1].get("until") or []
                for stop in [until] if isinstance(until, str) else until:
                    output = output.split(stop)[0] if stop else output
                answers[position] = output.strip()
        return answers

    @torch.inference_mode()
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        results = []
        tokenizer = self.processor.tokenizer
        for context, target, doc_to_visual, doc_id, task, split in (request.args for request in requests):
            continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
            sample = self._sample(context, doc_to_visual, doc_id, task, split)
            prompt = self.processor.apply_chat_template(
                sample.messages(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
            context_ids = prompt["input_ids"]
            continuation_ids = tokenizer(continuation, add_special_tokens=False, return_tensors="pt")["input_ids"]
            inputs = {**prompt, "input_ids": torch.cat([context_ids, continuation_ids], dim=1)}
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
            inputs = {key: value.to(self.model.device) for key, value in inputs.items()}
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            logits = self.model(**inputs).logits[0, context_ids.shape[1] - 1 : -1].float()
            targets = continuation_ids[0].to(logits.device)
            log_probs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum()
            results.append((float(log_probs), bool((logits.argmax(dim=-1) == targets).all())))
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("allava: multi-round generation is not supported (ALLaVA is single-turn).")


def manifest():
    """Entry-point target: registers `--model allava` with lmms-eval's model registry."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.Allava")


def __getattr__(name: str):
    """`Allava` = AllavaLmms on lmms-eval's `lmms` base class, built (and lmms_eval imported) on first access."""
    if name != "Allava":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lmms_eval.api.model import lmms

    cls = type("Allava", (AllavaLmms, lmms), {"__module__": __name__, "__doc__": AllavaLmms.__doc__})
    globals()["Allava"] = cls
    return cls

"""The tiny world: everything the offline demo, the tests and the benches run instead of real models and teachers.

The procedurally generated shapes world (`shapes_world`), an OpenAI-compatible offline teacher that answers from it
(`offline_teacher`, with `offline_replies` and `offline_batches`), tiny random models and tokenizer (`models`), the
CPU recipes beside this file (`*.yaml`), the held-out evaluator (`shapes_eval`), loss curves (`loss_curve`), a fresh
process answering with a saved folder (`answer`) and the demo that chains them all (`demo`).
"""

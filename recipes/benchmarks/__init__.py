"""One plain module per benchmark, plus the helpers they share.

Every benchmark module defines:
  NAME, PAPER_COLUMN, DATASET_ID, DATASET_CONFIG, SPLIT    where its data lives (DATASET_ID None: local copy only)
  PROMPT_VARIANTS (name -> description), DEFAULT_VARIANT    how the question is put to the model
  MAX_NEW_TOKENS, METRIC                                     generation budget and the headline metric's name
  make_samples(rows, variant) -> list[Sample]               a dataset row becomes (prompt text, images, target)
  aggregate(records) -> {"value", "details", "per_sample"}  the score, from the cached per-sample records
and either
  parse_answer(target, raw_answer) -> parsed answer         rule-scored benchmarks
or
  JUDGE_PROMPT (file in prompts/), judge_messages(sample, answer, template), parse_judgement(reply, target)
optionally
  load_rows(open_split, limit) -> rows                      when the rows need joining or filtering first
  UNCONFIRMED = "what is not confirmed"                      shown by --list and stored in results.json
"""

"""Test-wide environment: no network, no writes under ~/.cache, deterministic CPU threads."""

import atexit
import os
import shutil
import tempfile


# Set before transformers / datasets / huggingface_hub are imported by any test module; removed when pytest exits
# (a session's caches reach ~70 MB, and every run makes a new one).
_HF_HOME = tempfile.mkdtemp(prefix="allava-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("HF_TOKEN", None)

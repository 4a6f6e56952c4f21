"""The task instructions (`instructions.json`, local task name -> instruction): evaluation embeds queries with them,
and every exported checkpoint names them as prompts in its sentence-transformers config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

INSTRUCTIONS_FILE = Path(__file__).with_name("instructions.json")
LOCAL_TO_MTEB = {"stsb": "STSBenchmark", "scifact": "SciFact"}  # local tasks with an mteb twin of that name


def load_instructions(path: str | Path = INSTRUCTIONS_FILE) -> dict[str, str]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def task_prompts(config: Any) -> dict[str, str]:
    """Each task's instruction as a decoder prompt, keyed by mteb task name where the task has an mteb twin (mteb
    looks prompts up by task name), else by the local task name."""
    return {LOCAL_TO_MTEB.get(k, k): config.query_prompt(v) for k, v in load_instructions().items()}

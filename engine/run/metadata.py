"""What a run records about itself, once: environment, model fingerprints, the run tables (meta,
teachers, signals) and the timings merged into meta at the end."""

from __future__ import annotations

import json
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from engine import __version__, maths
from engine.inputs.config import RunConfig
from engine.inputs.weights import model_fingerprints
from engine.run.rows import QuestionStats
from engine.run.world import World
from engine.runfile import schema, store
from engine.stages.node_scores import rank_signal


def environment(world: World) -> dict[str, Any]:
    """Versions, device and threads: what a number from this run depends on besides the config."""
    import duckdb
    import transformers

    dev = world.student.device
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "duckdb": duckdb.__version__, "numpy": np.__version__,
        "device": str(dev),
        "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                        else platform.processor() or "cpu"),
        "dtype": str(next(world.student.model.parameters()).dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
    }


_SIGNAL_LOSS = {"rkl": "KL(p || q)", "fkl": "KL(q || p)",
                "jsd": "beta KL(q || M) + (1 - beta) KL(p || M)",
                "sampled": "-(log q_y - log p_y) log p_y, ratio held constant"}


def run_tables(cfg: RunConfig, env: dict[str, Any]) -> dict[str, pa.Table]:
    """meta, teachers and signals: written once, at the start of a run."""
    teachers = cfg.all_teachers
    families = cfg.signals.families
    return {
        "meta": store.meta_table({
            "schema_version": str(schema.SCHEMA_VERSION), "engine_version": __version__,
            "config_toml": cfg.raw_toml, "config_hash": cfg.fingerprint(),
            "config_path": str(cfg.source), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": env, "student_model": cfg.student.model,
            "models": model_fingerprints(cfg),
            "batch_plan": {"continuations_batch_size": cfg.continuations.batch_size,
                           "score_chunk": cfg.memory.score_chunk},
            "rank_signal": rank_signal(families),
            "sampling_temperature": str(cfg.sampling.temperature),
            "node_strategy": cfg.nodes.strategy, "continuations_n": str(cfg.continuations.n),
            "rollouts_g": str(cfg.sampling.rollouts), "seed": str(cfg.seed),
            "bootstrap_draws": str(cfg.bootstrap_draws),
            "teacher_logits_temperature": "per teacher (teachers.temperature)",
            "score_rules": cfg.scores.model_dump(),
            "sharpened_temperature": str(cfg.controls.sharpened_temperature),
            "interval_levels": {**maths.LEVELS,
                                "stakes_candidate": maths.STAKES_CANDIDATE_LEVEL},
        }),
        "teachers": pa.table({
            "teacher": [t.name for t in teachers], "kind": [t.kind for t in teachers],
            "is_control": [t.is_control for t in teachers],
            "model": [cfg.portable(t.model or cfg.student.model) for t in teachers],
            "template": [t.prompt for t in teachers],
            "temperature": [t.temperature for t in teachers],
            "description": [t.description or f"{t.kind} teacher" for t in teachers],
            "ordinal": list(range(len(teachers))),
        }),
        "signals": pa.table({
            "signal": list(families),
            "loss": [_SIGNAL_LOSS[f] for f in families],
            "beta": [cfg.signals.jsd_beta if f == "jsd" else None for f in families],
            "exact_split": [f == "rkl" for f in families],
        }),
    }


def timings_json(results: list[QuestionStats], wall: float) -> str:
    """meta `timings`: this invocation's totals (per-question stages: question_stages)."""
    return json.dumps({
        "wall_seconds": round(wall, 3),
        "questions": len(results),
        "continuations": sum(r.n_continuations for r in results),
        "generated_tokens": sum(r.generated_tokens for r in results),
        "question_seconds": round(sum(r.seconds for r in results), 3),
        "write_seconds": round(sum(r.write_seconds for r in results), 3),
    })

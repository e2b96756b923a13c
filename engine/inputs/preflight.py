"""Everything about a run that can be checked without loading weights, checked before anything
is written: templates against the questions, tokenizers, vocabularies, chat templates, the
verifier and the device. `opd-engine validate` and `opd-engine run` call the same function, so
"config OK" means the run will not fail for any of these reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.inputs.config import RunConfig
from engine.inputs.datasets import Question


class PreflightError(Exception):
    """One or more problems found before loading weights; each is listed with its fix."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def check_templates(cfg: RunConfig, questions: Sequence[Question]) -> list[str]:
    """Every placeholder names a field some question has, and renders on every question."""
    from engine.inputs.contexts import placeholders, with_fields
    from engine.inputs.prompts import TemplateError, render_template, template_fields

    problems: list[str] = []
    fields = sorted({k for q in questions for k, v in q.fields.items() if v is not None})
    filled = placeholders(cfg)  # the engine fills these: stand-in text to test the rendering
    stand_in = {name: "(context)" for name in filled}
    per_question = ["few_shot"] if cfg.derived.few_shot else []
    templates = [("[student] prompt", cfg.student.prompt, [*fields, *per_question])] + [
        (f"teacher {t.name!r} prompt", t.prompt, [*fields, *sorted(filled)])
        for t in cfg.teachers] + [
        (f"context {c.name!r} prompt", c.prompt, [*fields, *per_question])
        for c in cfg.contexts]
    if cfg.derived.few_shot:
        templates.append(("[derived] few_shot_template", cfg.derived.few_shot_template, fields))
    for where, template, available in templates:
        try:
            names = template_fields(template)
        except TemplateError as e:
            problems.append(f"{where}: {e}")
            continue
        unknown = sorted(n for n in names if n not in available)
        if unknown:
            problems.append(
                f"{where}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}: no "
                f"field of the dataset or context has that name ({{few_shot}} needs [derived] "
                f"few_shot >= 1, {{name}} a [[contexts]] entry); fields available: "
                f"{', '.join('{' + a + '}' for a in available)}")
            continue
        for q in questions:
            try:
                render_template(template, with_fields(q, stand_in))
            except TemplateError as e:
                problems.append(f"{where}: {e}")
                break
    if not cfg.student.chat_template and (cfg.student.system_prompt
                                          or cfg.student.chat_template_kwargs):
        problems.append("[student]: system_prompt and chat_template_kwargs apply only with "
                        "chat_template = true; set it or remove them")
    return problems


def check_device(device: str) -> list[str]:
    if not device.startswith("cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return [f"device = {device!r} but CUDA is not available on this machine; use "
                "device = 'auto' or 'cpu'"]
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return [f"device = {device!r} but this machine has {torch.cuda.device_count()} GPU(s)"]
    return []


_SPECIALS = ("bos_token", "eos_token", "pad_token", "unk_token")


class TokenizerFiles:
    """What a tokenizer directory says about ids, read from its files without transformers
    (fast to check, and `validate` stays torch-free): vocabulary with added tokens, special
    tokens, chat template."""

    def __init__(self, path: Path):
        import json

        from tokenizers import Tokenizer

        self.vocab: dict[str, int] = Tokenizer.from_file(str(path / "tokenizer.json")) \
            .get_vocab(with_added_tokens=True)
        conf_file = path / "tokenizer_config.json"
        conf = json.loads(conf_file.read_text()) if conf_file.exists() else {}
        smap_file = path / "special_tokens_map.json"
        if smap_file.exists():
            conf = {**json.loads(smap_file.read_text()), **conf}
        self.specials = {k: self._content(conf.get(k)) for k in _SPECIALS}
        self.chat_template = bool(conf.get("chat_template")) or \
            (path / "chat_template.jinja").exists() or (path / "chat_template.json").exists()

    @staticmethod
    def _content(tok: Any) -> str | None:
        return tok.get("content") if isinstance(tok, dict) else tok


def _mismatch(student: TokenizerFiles, teacher: TokenizerFiles) -> str | None:
    if student.vocab != teacher.vocab:
        s_by_id = {i: t for t, i in student.vocab.items()}
        t_by_id = {i: t for t, i in teacher.vocab.items()}
        i = min(i for i in s_by_id.keys() | t_by_id.keys() if s_by_id.get(i) != t_by_id.get(i))
        return (f"tokenizers differ at id {i}: {s_by_id.get(i)!r} in the student but "
                f"{t_by_id.get(i)!r} here (vocabularies: {len(s_by_id)} vs {len(t_by_id)} "
                "tokens); a teacher must use the student's tokenizer")
    for k in _SPECIALS:
        if student.specials[k] != teacher.specials[k]:
            return (f"{k} differs: {student.specials[k]!r} in the student but "
                    f"{teacher.specials[k]!r} here; a teacher must use the student's special "
                    "tokens")
    return None


def check_models(cfg: RunConfig) -> list[str]:
    """Model directories, tokenizer files, chat templates and vocabulary compatibility.

    Local directories are checked from their files; a path that is not a local directory (a hub
    id) cannot be checked offline and is left to loading.
    """
    problems: list[str] = []
    models = [("student", cfg.student.model)] + [
        (t.name, t.model) for t in cfg.teachers if t.model]
    toks: dict[str, TokenizerFiles] = {}
    for name, path in models:
        p = Path(path)
        if path in toks or not p.is_dir():
            continue
        if not (p / "config.json").exists():
            problems.append(f"{name}: {path} has no config.json; point to a saved model "
                            "directory")
            continue
        if not (p / "tokenizer.json").exists():
            if not any(p.glob("tokenizer*")) and not any(p.glob("*.model")):
                problems.append(f"{name}: {path} has no tokenizer files (tokenizer.json, "
                                "tokenizer_config.json); save the tokenizer with the model")
            continue  # a slow (sentencepiece) tokenizer: checked when it loads
        try:
            toks[path] = TokenizerFiles(p)
        except Exception as e:  # tokenizers / json raise several types for a broken file
            problems.append(f"{name}: cannot read the tokenizer files of {path}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    student = toks.get(cfg.student.model)
    if cfg.student.chat_template:
        for name, path in models:
            tok = toks.get(path)
            if tok is not None and not tok.chat_template:
                problems.append(f"{name}: chat_template = true but the tokenizer of {path} has "
                                "no chat template; set chat_template = false and write the full "
                                "prompt in the template")
    for name, path in models[1:]:
        tok = toks.get(path)
        if student is None or tok is None or path == cfg.student.model:
            continue
        why = _mismatch(student, tok)
        if why:
            problems.append(f"teacher {name!r} ({path}): {why}")
    return problems


def check_verifier(cfg: RunConfig) -> list[str]:
    from engine.verify.verifiers import VerifierConfigError, resolve_callable

    v = cfg.verifier
    try:
        if v.kind == "callable":
            resolve_callable(v.callable or "")
        elif v.kind == "math_verify":
            import importlib

            importlib.import_module("math_verify")
    except VerifierConfigError as e:
        return [f"[verifier]: {e}"]
    except ImportError:
        return ["[verifier]: kind = 'math_verify' needs the math-verify package: pip install "
                "'opd-diagnostics[math]'"]
    return []


def preflight(cfg: RunConfig, questions: Sequence[Question]) -> None:
    """Raise PreflightError with every problem found; return quietly when there is none."""
    problems = (check_templates(cfg, questions) + check_device(cfg.device)
                + check_verifier(cfg) + check_models(cfg))
    if problems:
        raise PreflightError(problems)

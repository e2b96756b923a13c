"""Run configuration, declared once: a pydantic model per TOML table, each key with its type,
default, rule and doc line.

TOML in, validated frozen models out, every problem reported at once with its place (`[section]`,
`teacher 'name'`) and its fix. The README's config reference and `opd-engine config --defaults`
are generated from these models (engine.inputs.config_doc), so the three cannot disagree.
Validation loads nothing heavy (no torch, no models): `opd-engine validate` must answer in a
blink, and a four-hour run must not die at minute 200 on a typo. Paths are resolved relative to
the config file's directory.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from engine.runfile.names import CONTROL_SHARPENED, CONTROL_SOFTENED, SIGNALS

VerifierKind = Literal["numeric", "exact", "gsm8k", "boxed", "mc", "math_verify", "callable"]
Preset = Literal["plain", "gsm8k", "math500", "mc"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
VERIFIER_KINDS: tuple[str, ...] = get_args(VerifierKind)
PRESETS: tuple[str, ...] = get_args(Preset)
DTYPES: tuple[str, ...] = get_args(Dtype)
TEACHER_KINDS = ("external", "self")
"""What a config may write; the engine's controls have kind "control" (see RunConfig)."""
DERIVED_FIELDS = ("few_shot", "contrastive_correct", "contrastive_incorrect")
"""Placeholders the engine fills (engine.inputs.contexts); [[contexts]] names may not take them."""
HUB_KEYS = ("revision", "trust_remote_code")
"""Model keys hashed only when set, so configs written before they existed hash as before."""
_STRATEGY = re.compile(r"^(all|adaptive|stride:[1-9]\d*|entropy:[1-9]\d*)$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


class ConfigError(Exception):
    """One or more problems in a config; the message lists each with its fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"  - {p}" for p in problems))


def key(default: Any = ..., doc: str = "", *, why: str = "", example: Any = None,
        **rules: Any) -> Any:
    """One config key: its default (``...`` = required), its doc line (the README comment),
    the note a range error adds (`why`), the value docs show for a required key (`example`),
    and pydantic's rules (ge, gt, le, lt, strict)."""
    extra = {k: v for k, v in (("why", why), ("example", example)) if v is not None and v != ""}
    return Field(default, description=doc, json_schema_extra=extra or None, **rules)


class Table(BaseModel):
    """A TOML table: strict types (no "2" for 2, no true for 1), unknown keys refused, frozen."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Revision = Annotated[str | None, Field(
    description="hub models: the branch, tag or commit to load (unset: the hub's default)",
    json_schema_extra={"example": "main"}, min_length=1)]
TrustRemoteCode = Annotated[bool, Field(
    description="let transformers run the model repository's own code (only code you trust)")]


class ModelTable(Table):
    """A table that names a model: it loads with `load_kwargs` and hashes with `hashed`."""

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """What from_pretrained takes besides the path."""
        return {k: getattr(self, k) for k in HUB_KEYS}

    def hashed(self) -> dict[str, Any]:
        """Its values for fingerprints: the hub keys only where set (older runs hash alike)."""
        d = self.model_dump()
        for k in HUB_KEYS:
            if d[k] is None or d[k] is False:
                d.pop(k)
        return d


# -------------------------------------------------------------------------------------------------
# Validators shared by several tables (paths resolve against the context's "base")


def _check_template(template: str, name: str) -> str:
    """Malformed templates are config errors. Whether each placeholder names a field is checked
    against the dataset's actual rows (engine.inputs.preflight), since any column of a row is a
    field."""
    from engine.inputs.prompts import TemplateError, template_fields

    try:
        template_fields(template)
    except TemplateError as e:
        raise ValueError(f"{name}: {e}") from None
    return template


def _resolve(base: Path, path: str) -> str:
    """Local paths relative to the config; anything else (hub ids) unchanged."""
    if not path:
        return path
    p = Path(path).expanduser()
    cand = p if p.is_absolute() else base / p
    if cand.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        return str(cand)
    return path  # looks like a hub id "org/name"


def _model_path(model: str, info: ValidationInfo) -> str:
    """A model directory resolved against the config's folder and checked; a hub id kept."""
    if not model or info.context is None or "base" not in info.context:
        return model
    model = _resolve(info.context["base"], model)
    p = Path(model)
    if (p.is_absolute() or model.startswith(".")) and not p.exists():
        raise ValueError(f"model directory {model} does not exist")
    if p.is_dir() and not (p / "config.json").exists():
        raise ValueError(f"{model} has no config.json; point to a saved model directory")
    return model


def _seen(info: ValidationInfo, group: str, name: str) -> bool:
    """Whether another table of this config's `group` took `name` already (file input only)."""
    if info.context is None:
        return False
    seen = info.context.setdefault(f"seen_{group}", set())
    dup = name in seen
    seen.add(name)
    return dup


# -------------------------------------------------------------------------------------------------
# The tables, in the order the reference shows them


class StudentConfig(ModelTable):
    """The model being distilled into."""

    model: str = key(doc="any causal LM transformers can load: a directory or a hub id",
                     example="path/or/hub-id")
    revision: Revision = None
    trust_remote_code: TrustRemoteCode = False
    prompt: str = key("{question}", "template; placeholders name question fields")
    chat_template: bool = key(False, "render through the tokenizer's chat template (all models)")
    system_prompt: str = key("", "chat only")
    chat_template_kwargs: dict[str, Any] = key({}, "chat only, e.g. { enable_thinking = false }")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str, info: ValidationInfo) -> str:
        return _model_path(v, info)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        return _check_template(v, "prompt")


class DataConfig(Table):
    """The questions."""

    path: str = key(doc="JSONL or Parquet", example="questions.jsonl")
    preset: Preset = key("plain", "how columns map to question fields")
    fields: dict[str, str] = key({}, "explicit mapping, e.g. { question = \"problem\", id = "
                                     "\"uid\" }")
    limit: int = key(0, "0 = all", why="0 = all", ge=0)

    @field_validator("path")
    @classmethod
    def _exists(cls, v: str, info: ValidationInfo) -> str:
        if not v or info.context is None or "base" not in info.context:
            return v
        path = Path(_resolve(info.context["base"], v))
        if not path.is_file():
            raise ValueError(f"question file {path} does not exist")
        return str(path)


class VerifierConfig(Table):
    """How a completion is judged correct."""

    kind: VerifierKind = key("numeric", "numeric = the number after ####, gsm8k = strict with "
                                        "a last-number fallback, mc = the option letter")
    callable: str = key("", "\"module:function\" taking (completion, question) -> bool",
                        validate_default=True)
    timeout_s: float = key(5.0, "per completion; a verifier that raises or hangs marks it "
                                "unverifiable", gt=0)
    answer_after: str = key("", "e.g. \"</think>\": judge only the text after the marker "
                                "(reasoning models)")

    @field_validator("callable")
    @classmethod
    def _callable(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("kind") == "callable" and ":" not in v:
            raise ValueError("kind = 'callable' needs callable = 'module:function'")
        return v


class SamplingConfig(Table):
    """The student's sampling, for rollouts and continuations."""

    temperature: float = key(1.0, gt=0)
    top_p: float = key(1.0, gt=0, le=1)
    top_k: int = key(0, "0 = off (libraries default to 50: we never do)", why="0 = off", ge=0)
    max_new_tokens: int = key(64, ge=1)
    rollouts: int = key(4, "G per question", why="G per question", ge=1)


class CandidateConfig(Table):
    """Which next tokens a node probes."""

    student_top_k: int = key(4, "k_s", ge=0)
    teacher_top_k: int = key(2, "k_t per non-control teacher", ge=0)
    plausibility: float = key(0.0, "0 = filter off", why="0 = off", ge=0, lt=1)


class ContinuationConfig(Table):
    """The student's continuations after each candidate."""

    n: int = key(16, "N continuations per candidate",
                 why="cross-fitting splits continuations in halves", ge=2)
    batch_size: int = key(4096, "sequences decoded together", ge=1)


class NodeConfig(Table):
    """Which positions of a rollout are probed."""

    strategy: str = key("entropy:32", "all | stride:S | entropy:N   (adaptive: not yet)")
    budget_tokens: int = key(0, "generated tokens per question; 0 = unlimited", ge=0)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        if not _STRATEGY.match(v):
            raise ValueError(f"strategy must be all, stride:S, entropy:N or adaptive, got {v!r}")
        return v

    @property
    def kind(self) -> str:
        return self.strategy.split(":")[0]

    @property
    def arg(self) -> int:
        parts = self.strategy.split(":")
        return int(parts[1]) if len(parts) > 1 else 0


class SignalConfig(Table):
    """The per-token losses compared (method.md)."""

    families: tuple[str, ...] = key(SIGNALS, f"any non-empty subset of {', '.join(SIGNALS)}",
                                    strict=False)
    jsd_beta: float = key(0.5, ge=0, le=1)
    train_distribution: Literal["raw", "sampling"] = key(
        "raw", "p_train = softmax(z) (raw) or p_samp (sampling)")

    @field_validator("families")
    @classmethod
    def _families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(f not in SIGNALS for f in v):
            raise ValueError(f"families must be a non-empty subset of {list(SIGNALS)}, "
                             f"got {list(v)!r}")
        return v


class ControlConfig(Table):
    """Reference configurations a teacher must beat."""

    sharpened: bool = key(True, "the student itself at a lower temperature")
    sharpened_temperature: float = key(0.5, gt=0)
    softened: bool = key(True, "the first external teacher at a higher temperature")
    softened_temperature: float = key(2.0, gt=0)


class BootstrapConfig(Table):
    """Uncertainty of every interval."""

    draws: int = key(200, "Jeffreys draws per node", why="intervals need enough draws", ge=20)


class ScoreConfig(Table):
    """Thresholds of method.md revision 2: what is decisive, what is a label, who leads."""

    tau_stakes: float = key(0.1, "decisive node: stakes (spread of S over C+) >= tau", ge=0, le=1)
    plausible: float = key(0.01, "pi: C+ = candidates with p or a non-control q >= pi",
                           ge=0, le=1)
    epsilon: float = key(0.05, "helps/hurts: interval beyond +-epsilon, decisive nodes only",
                         ge=0, le=1)
    margin: float = key(0.1, "delta: a best teacher leads the runner-up by this (cosine units)",
                        why="cosine units", ge=0, le=2)
    leader_share: float = key(0.9, "... in at least this share of the paired draws, else "
                                   "\"tie\"", gt=0, le=1)
    rho: float = key(0.05, "beyond is NULL when h keeps less than rho of |g|^2 or |d|^2",
                     ge=0, le=1)


class MemoryConfig(Table):
    """Device memory (never changes results)."""

    max_resident_models: int = key(0, "0 = all on the device; 1 = one model at a time",
                                   why="0 = no limit", ge=0)
    score_chunk: int = key(256, "max positions per full-vocabulary chunk", ge=1)
    question_batch: int = key(8, "with a residency limit: questions per visit of each model",
                              ge=1)


class ParamCheckConfig(Table):
    """Opt-in parameter-space check."""

    nodes: int = key(0, "per rollout, the highest-|g| nodes; 0 = off", why="0 = off", ge=0)
    groups: tuple[str, ...] = key((), "parameter-name prefixes, e.g. [\"lm_head\", "
                                      "\"model.layers.27\"]; empty = every parameter",
                                  strict=False)


class TeacherConfig(ModelTable):
    """A teacher: another model, or the student's own weights with privileged context."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "strong", "kind": "external", "model": "path/or/hub-id"},
        {"name": "self_solution", "kind": "self",
         "prompt": "{question}\nReference solution: {solution}"}]})

    name: str = key(doc="letters, digits, _ or -, starting with a letter", example="strong")
    kind: str = key(doc="external: another model with the same tokenizer (checked) | self: the "
                        "student's own weights with privileged context", example="external")
    model: str = key("", "external only: a directory or hub id", validate_default=True)
    revision: Revision = None
    trust_remote_code: TrustRemoteCode = False
    prompt: str = key("{question}", "what this teacher reads before the student's tokens")
    temperature: float = key(1.0, "temperature at which its logits are read", gt=0)
    description: str = key("", "shown in the TUI")
    _control: bool = PrivateAttr(False)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str, info: ValidationInfo) -> str:
        if not _NAME.match(v):
            raise ValueError("name must start with a letter and use letters, digits, _ or -")
        if v in (CONTROL_SHARPENED, CONTROL_SOFTENED) or _seen(info, "teachers", v):
            raise ValueError("duplicate or reserved name")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in TEACHER_KINDS:
            raise ValueError(f"kind must be 'external' or 'self', got {v!r}")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind == "external" and not v:
            raise ValueError("an external teacher needs model = '<dir or hub id>'")
        if kind == "self" and v:
            raise ValueError("a self teacher uses the student's weights; remove 'model'")
        return _model_path(v, info)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        return _check_template(v, "prompt")

    @property
    def is_control(self) -> bool:
        """Excluded from candidate sets and the best teacher: a control, or read as one."""
        return self._control

    def as_control(self) -> TeacherConfig:
        """The same teacher read as a control would be (its values are NULLed later)."""
        out = self.model_copy()
        out._control = True
        return out


class DerivedConfig(Table):
    """Contexts the engine derives from the run (engine/inputs/contexts.py)."""

    few_shot: int = key(0, "{few_shot}: this many worked examples of OTHER questions",
                        why="0 = off", ge=0)
    few_shot_template: str = key("Question: {question}\nSolution: {solution}",
                                 "how each example is written")
    contrastive_missing: Literal["solution", "skip"] = key(
        "solution", "where no other rollout is correct, the reference solution stands in "
                    "(solution) or the teacher is NULL at that rollout (skip)",
        why="solution: use the reference solution; skip: the teacher is NULL at that rollout")
    contrastive_after: str = key("", "e.g. \"</think>\": show other rollouts' answers only")

    @field_validator("few_shot_template")
    @classmethod
    def _template(cls, v: str) -> str:
        return _check_template(v, "few_shot_template")


class ContextConfig(ModelTable):
    """A generated context: a model writes a text once per question, placeholder {name}."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "summary", "model": "student",
         "prompt": "Summarise this solution in three sentences.\n\n{solution}"}]})

    name: str = key(doc="the placeholder it fills: {summary}", example="summary")
    model: str = key(doc="\"student\" or any causal LM (its tokenizer may differ)",
                     example="student")
    revision: Revision = None
    trust_remote_code: TrustRemoteCode = False
    prompt: str = key(doc="what the model is asked, a template over question fields",
                      example="{solution}")
    chat_template: bool = key(False, "system_prompt, chat_template_kwargs as for [student]")
    system_prompt: str = key("", "chat only")
    chat_template_kwargs: dict[str, Any] = key({}, "chat only", validate_default=True)
    answer_after: str = key("", "keep only the text after the last marker (e.g. \"</think>\")")
    temperature: float = key(1.0, "its own sampling", gt=0)
    top_p: float = key(1.0, gt=0, le=1)
    top_k: int = key(0, "0 = off", why="0 = off", ge=0)
    max_new_tokens: int = key(256, ge=1)
    seed: int = key(0, "its own seed: the text does not change with the run's")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str, info: ValidationInfo) -> str:
        if not v.isidentifier():
            raise ValueError("name must be a placeholder name (letters, digits, _), it is used as "
                             "{" + v + "} in teacher prompts")
        if v in DERIVED_FIELDS or _seen(info, "contexts", v):
            raise ValueError(f"duplicate or reserved name (reserved: {', '.join(DERIVED_FIELDS)})")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str, info: ValidationInfo) -> str:
        return v if v == "student" else _model_path(v, info)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        return _check_template(v, "prompt")

    @field_validator("chat_template_kwargs")
    @classmethod
    def _chat_only(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("chat_template") is False and (v or info.data.get("system_prompt")):
            raise ValueError("system_prompt and chat_template_kwargs apply only with "
                             "chat_template = true; set it or remove them")
        return v

    @model_validator(mode="after")
    def _own_model_only(self) -> ContextConfig:
        if self.model == "student" and (self.revision is not None or self.trust_remote_code):
            raise ValueError("revision and trust_remote_code apply to a model of its own; "
                             "model = 'student' writes with the student as [student] loads it")
        return self


class RunConfig(Table):
    """A whole run. Top-level keys, then one table per section, then the [[...]] arrays."""

    output_dir: Path = key(Path("runs/run"), "run directory: parts/, run/, run.duckdb",
                           strict=False, validate_default=True)
    seed: int = key(0, "every draw is keyed by it (and by question, rollout, node, ...)")
    device: str = key("auto", "auto (CUDA bf16 when present, else CPU fp32) | cpu | cuda | cuda:N")
    dtype: Dtype = key("auto")
    student: StudentConfig
    data: DataConfig
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    candidates: CandidateConfig = Field(default_factory=CandidateConfig)
    continuations: ContinuationConfig = Field(default_factory=ContinuationConfig)
    nodes: NodeConfig = Field(default_factory=NodeConfig)
    signals: SignalConfig = Field(default_factory=SignalConfig)
    controls: ControlConfig = Field(default_factory=ControlConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    scores: ScoreConfig = Field(default_factory=ScoreConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    param_check: ParamCheckConfig = Field(default_factory=ParamCheckConfig)
    teachers: tuple[TeacherConfig, ...] = Field((), strict=False, validate_default=True)
    derived: DerivedConfig = Field(default_factory=DerivedConfig)
    contexts: tuple[ContextConfig, ...] = Field((), strict=False)
    _source: Path = PrivateAttr(Path("<default>"))
    _raw_toml: str = PrivateAttr("")

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, v: Path, info: ValidationInfo) -> Path:
        v = v.expanduser()
        if v.is_absolute() or info.context is None or "out_base" not in info.context:
            return v
        return info.context["out_base"] / v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and re.fullmatch(r"cuda:\d+", v) is None:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v

    @field_validator("teachers")
    @classmethod
    def _some_teacher(cls, v: tuple[TeacherConfig, ...]) -> tuple[TeacherConfig, ...]:
        if not v:
            raise ValueError("no teachers: add at least one [[teachers]] table "
                             "(kind = external | self)")
        return v

    @model_validator(mode="after")
    def _one_load_per_model(self) -> RunConfig:
        """Teachers and contexts naming one model share one loaded copy: one revision for all.

        (The student is loaded on its own: a teacher may be another revision of it.)
        """
        first: dict[str, tuple[str, dict[str, Any]]] = {}
        named = [*((f"teacher '{t.name}'", t) for t in self.teachers),
                 *((f"context '{c.name}'", c) for c in self.contexts if c.model != "student")]
        for where, table in named:
            if not table.model:
                continue
            other, options = first.setdefault(table.model, (where, table.load_kwargs))
            if options != table.load_kwargs:
                raise ValueError(f"{where}: model {table.model} is also loaded for {other} with "
                                 "another revision or trust_remote_code; it is loaded once, so "
                                 "give both the same")
        return self

    @property
    def source(self) -> Path:
        """The config file it was read from."""
        return self._source

    @property
    def raw_toml(self) -> str:
        """What the run file stores as its config: the file's text (or the effective config
        where `--set` changed it)."""
        return self._raw_toml

    @property
    def bootstrap_draws(self) -> int:
        return self.bootstrap.draws

    @property
    def all_teachers(self) -> tuple[TeacherConfig, ...]:
        """Configured teachers followed by the controls, in storage order."""
        out = list(self.teachers)
        c = self.controls
        if c.sharpened:
            out.append(_control(
                name=CONTROL_SHARPENED, model="", prompt=self.student.prompt,
                temperature=c.sharpened_temperature,
                description=f"student at T={c.sharpened_temperature:g}: pure sharpening, no "
                            "knowledge"))
        first_ext = next((t for t in self.teachers if t.kind == "external"), None)
        if c.softened and first_ext is not None:
            out.append(_control(
                name=CONTROL_SOFTENED, model=first_ext.model, prompt=first_ext.prompt,
                temperature=first_ext.temperature * c.softened_temperature,
                description=f"{first_ext.name} at T={c.softened_temperature:g}: same knowledge, "
                            "softer", **first_ext.load_kwargs))
        return tuple(out)

    def portable(self, path: str) -> str:
        """A model or data path relative to the config's folder where it lies inside it.

        What the run file stores and hashes, so that the same config in another checkout (CI
        clones elsewhere) gives the same rows and fingerprint; paths outside stay as written.
        """
        if not Path(path).is_absolute():  # a hub id, or a path as written
            return path
        try:
            return str(Path(path).resolve().relative_to(Path(self.source).resolve().parent))
        except ValueError:
            return path

    def fingerprint(self) -> str:
        """Hash of everything that changes results (output dir, memory, batch size excluded).

        A key added later counts only where used (contexts, derived, a model's revision or
        trust_remote_code), so a config that uses none of them hashes as it did before.
        """
        d = self.model_dump(exclude={"output_dir", "memory", "bootstrap"})
        d["bootstrap_draws"] = self.bootstrap.draws
        d["continuations"].pop("batch_size")
        portable = self.portable
        d["student"] = self.student.hashed() | {"model": portable(self.student.model)}
        d["data"]["path"] = portable(self.data.path)
        d["teachers"] = [t.hashed() | {"model": portable(t.model) if t.model else "",
                                       "is_control": t.is_control} for t in self.teachers]
        d["contexts"] = [c.hashed() | {"model": c.model if c.model == "student"
                                       else portable(c.model)} for c in self.contexts]
        if not d["contexts"]:
            d.pop("contexts")
        if self.derived == DerivedConfig():
            d.pop("derived")
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _control(**values: Any) -> TeacherConfig:
    """A control teacher: built by the engine from validated values, kind "control"."""
    t = TeacherConfig.model_construct(kind="control", **values)
    t._control = True
    return t


SECTIONS: dict[str, type[Table]] = {
    name: f.annotation for name, f in RunConfig.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, Table)}
"""[section] name -> its table."""
ARRAYS: dict[str, type[Table]] = {"teachers": TeacherConfig, "contexts": ContextConfig}
"""[[array]] name -> the table of each entry."""


# -------------------------------------------------------------------------------------------------
# Reading a file


def parse_config(path: Path, *, data_override: str | None = None,
                 overrides: Sequence[str] = ()) -> RunConfig:
    """Read and validate a config file; `overrides` are `--set section.key=value` items.

    Raises ConfigError listing every problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file {path} does not exist; pass the path of a TOML file"])
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path} is not valid TOML: {e}"]) from None
    raw, origins = apply_overrides(raw, overrides)
    cfg = config_from_dict(raw, base=path.parent.resolve(), source=path, raw_toml=text,
                           data_override=data_override, origins=origins)
    if overrides:
        from engine.inputs.config_doc import effective_toml

        note = "\n".join(f"#   --set {o}" for o in overrides)
        cfg._raw_toml = effective_toml(cfg, header=f"# {path} with\n{note}\n")
    return cfg


def config_from_dict(raw: dict[str, Any], *, base: Path, source: Path, raw_toml: str = "",
                     data_override: str | None = None,
                     origins: dict[tuple[Any, ...], str] | None = None) -> RunConfig:
    """Validate a parsed TOML document; `base` is the folder relative paths start from."""
    if data_override:
        raw = {**raw, "data": {**(raw.get("data") if isinstance(raw.get("data"), dict) else {}),
                               "path": data_override}}
    out_base = Path.cwd() if source.name == "<default>" else base
    try:
        cfg = RunConfig.model_validate(raw, context={"base": base, "out_base": out_base})
    except ValidationError as e:
        problems = [p for err in e.errors(include_url=False)
                    for p in _problems(err, raw, origins or {})]
        raise ConfigError(list(dict.fromkeys(problems))) from None
    cfg._source = source
    cfg._raw_toml = raw_toml
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]
                    ) -> tuple[dict[str, Any], dict[tuple[Any, ...], str]]:
    """`section.key=value` items applied to a parsed config (values read as TOML, else text).

    Returns the new document and, per overridden place, the item (problems there name it).
    Keys are checked here, so a misspelt one is named as the user typed it.
    """
    if not overrides:
        return raw, {}
    raw = copy.deepcopy(raw)
    origins: dict[tuple[Any, ...], str] = {}
    problems: list[str] = []
    for item in overrides:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name:
            problems.append(f"--set {item}: expected section.key=value, e.g. --set "
                            "sampling.rollouts=8")
            continue
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: entropy:8, cpu, a path
        place, why = _override_place(raw, name.split("."))
        table: Any = raw
        for part in place[:-1] if not why else ():
            table = table[part] if isinstance(part, int) else table.setdefault(part, {})
        if not why and not isinstance(table, dict):
            why = f"{place[0]} is not a table in this config"
        if why:
            problems.append(f"--set {item}: {why}")
            continue
        table[place[-1]] = value
        origins[tuple(place)] = item
    if problems:
        raise ConfigError(problems)
    return raw, origins


def _override_place(raw: dict[str, Any], parts: list[str]) -> tuple[list[Any], str]:
    """Where `--set a.b.c` writes in the document, or why it cannot."""
    head = parts[0]
    if head in ARRAYS:
        entries = raw.get(head, [])
        names = ([e.get("name") for e in entries if isinstance(e, dict)]
                 if isinstance(entries, list) else [])
        if len(parts) != 3:
            return [], f"write {head}.<name>.<key>, e.g. {head}.{names[0] if names else 'x'}.prompt"
        if parts[1] not in names:
            return [], (f"no {head[:-1]} named {parts[1]!r} in this config "
                        f"({', '.join(map(str, names)) or 'none'})")
        return [head, names.index(parts[1]), parts[2]], _unknown(ARRAYS[head], parts[2],
                                                                 f"[[{head}]]")
    if head in SECTIONS:
        if len(parts) != 2:
            return [], f"write {head}.<key>, e.g. {head}.{next(iter(SECTIONS[head].model_fields))}"
        return [head, parts[1]], _unknown(SECTIONS[head], parts[1], f"[{head}]")
    top = [k for k in RunConfig.model_fields if k not in SECTIONS and k not in ARRAYS]
    if len(parts) == 1 and head in top:
        return [head], ""
    return [], f"unknown key or table {head!r}{_did_you_mean(head, list(RunConfig.model_fields))}"


def _unknown(model: type[Table], name: str, where: str) -> str:
    """Why `name` is no key of `model`, or "" when it is one."""
    if name in model.model_fields:
        return ""
    return f"{where} has no key {name!r}{_did_you_mean(name, list(model.model_fields))}"


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f" ({hint}known keys: {', '.join(known)})"


# -------------------------------------------------------------------------------------------------
# pydantic's errors as problems: place, what is wrong, how to fix it

_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               Path: "a string (a path)"}


def _problems(err: dict[str, Any], raw: dict[str, Any],
              origins: dict[tuple[Any, ...], str]) -> list[str]:
    loc = tuple(err["loc"])
    kind = err["type"]
    if not loc and kind == "value_error":  # a rule across tables: its message names the place
        return [str(err["ctx"]["error"])]
    model: type[BaseModel] = RunConfig
    where, at = "top level", 0
    if loc and loc[0] in SECTIONS and len(loc) > 1:
        model, where, at = SECTIONS[loc[0]], f"[{loc[0]}]", 1
    elif loc and loc[0] in ARRAYS:
        if len(loc) == 1:
            if kind in ("tuple_type", "list_type"):
                return [f"{loc[0]} must be an array of tables: [[{loc[0]}]]"]
            return [str(err.get("ctx", {}).get("error", err["msg"]))]
        item = _at(raw, loc[:2])
        name = item.get("name") if isinstance(item, dict) else None
        label = "teacher" if loc[0] == "teachers" else "context"
        where = (f"{label} {name!r}" if isinstance(name, str) and name
                 else f"[[{loc[0]}]] #{loc[1] + 1}")
        if len(loc) == 2:
            if kind == "value_error":  # a rule across keys of one entry
                return [f"{where}: {err['ctx']['error']}"]
            return [f"[[{loc[0]}]] #{loc[1] + 1} must be a table"]
        model, at = ARRAYS[loc[0]], 2
    name = loc[at] if len(loc) > at else ""
    field: FieldInfo | None = model.model_fields.get(name) if isinstance(name, str) else None
    origin = next((f" (from --set {o})" for place, o in origins.items()
                   if loc[:len(place)] == place), "")
    return [p + origin for p in _describe(err, kind, where, name, field, model, raw, loc[:at + 1])]


def _describe(err: dict[str, Any], kind: str, where: str, name: Any, field: FieldInfo | None,
              model: type[BaseModel], raw: dict[str, Any], place: tuple[Any, ...]) -> list[str]:
    """The problem text of one error (several for a missing section)."""
    why = ((field.json_schema_extra or {}).get("why", "") if field is not None
           and isinstance(field.json_schema_extra, dict) else "")
    note = f" ({why})" if why else ""
    if kind == "extra_forbidden":
        known = list(model.model_fields)
        if model is RunConfig:
            return [f"top level: unknown key or table '{name}'{_did_you_mean(name, known)}"]
        return [f"{where}: unknown key '{name}'{_did_you_mean(name, known)}"]
    if kind == "missing":
        sub = field.annotation if field is not None else None
        if isinstance(sub, type) and issubclass(sub, Table):
            return [f"[{name}]: '{k}' is required" for k, f in sub.model_fields.items()
                    if f.is_required()]
        return [f"{where}: '{name}' is required"]
    if kind in ("model_type", "model_attributes_type", "dict_type") and field is not None \
            and isinstance(field.annotation, type) and issubclass(field.annotation, Table):
        return [f"[{name}] must be a table, e.g. [{name}]"]
    if kind in ("value_error", "assertion_error"):
        return [f"{where}: {err['ctx']['error']}"]
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") \
            and field is not None:
        return [f"{where}: {name} must be {_bounds(field)}{note}"]
    if kind == "string_too_short":
        return [f"{where}: '{name}' must not be empty (leave it out for the default)"]
    if kind == "literal_error" and field is not None:
        choices = get_args(field.annotation)
        allowed = (" or ".join(repr(c) for c in choices) if len(choices) <= 2
                   else "one of " + ", ".join(map(str, choices)))
        return [f"{where}: {name} must be {allowed}, got {err['input']!r}{note}"]
    if field is not None:
        return [f"{where}: '{name}' must be {_type_words(field.annotation)}, "
                f"got {_at(raw, place)!r}"]
    return [f"{where}: {name}: {err['msg']}"]


def _bounds(field: FieldInfo) -> str:
    """">= 1", "> 0" or "in (0, 1]" from a field's rules."""
    lo = hi = ""
    for m in field.metadata:
        for attr, fmt in (("ge", "[{}"), ("gt", "({}"), ("le", "{}]"), ("lt", "{})")):
            v = getattr(m, attr, None)
            if v is not None:
                if attr[0] == "g":
                    lo = fmt.format(f"{v:g}")
                else:
                    hi = fmt.format(f"{v:g}")
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + lo[1:]
    return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]


def _type_words(annotation: Any) -> str:
    if annotation in _TYPE_WORDS:
        return _TYPE_WORDS[annotation]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (tuple, list):
        return f"a list of {_type_words(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        inner = _type_words(args[1])
        return "a table" if args[1] is Any else f"a table of {inner.split(' ', 1)[1]}s"
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if len(args) == 2 and type(None) in args:  # X | None
        return _type_words(next(a for a in args if a is not type(None)))
    return "a table"


def _at(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw

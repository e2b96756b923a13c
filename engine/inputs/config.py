"""Run configuration: TOML in, validated dataclasses out, every problem reported at once.

Validation loads nothing heavy (no torch, no models): `opd-engine validate` must answer in a
blink, and a four-hour run must not die at minute 200 on a typo. Paths are resolved relative to the
config file's directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.runfile.schema import SIGNALS

VERIFIER_KINDS = ("numeric", "exact", "gsm8k", "boxed", "mc", "math_verify", "callable")
PRESETS = ("plain", "gsm8k", "math500", "mc")
DTYPES = ("auto", "float32", "bfloat16", "float16")
CONTROL_SHARPENED = "ctrl_sharpened"
CONTROL_SOFTENED = "ctrl_softened"


class ConfigError(Exception):
    """One or more problems in a config; the message lists each with its fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class StudentConfig:
    model: str
    prompt: str = "{question}"
    chat_template: bool = False
    system_prompt: str = ""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherConfig:
    name: str
    kind: str  # external | self | control
    model: str  # model path; "" for self (the student's weights)
    prompt: str
    temperature: float = 1.0
    description: str = ""
    is_control: bool = False


@dataclass(frozen=True)
class DerivedConfig:
    """Contexts the engine derives from the run (placeholders in teacher prompts)."""

    few_shot: int = 0  # {few_shot}: this many worked examples of other questions (seeded)
    few_shot_template: str = "Question: {question}\nSolution: {solution}"
    contrastive_missing: str = "solution"  # no such rollout: "solution" (reference) | "skip"
    contrastive_after: str = ""  # show only the text after the last marker (e.g. "</think>")


@dataclass(frozen=True)
class ContextConfig:
    """A generated context: a model writes a text once per question, placeholder {name}."""

    name: str
    model: str  # "student" or a model path
    prompt: str
    chat_template: bool = False
    system_prompt: str = ""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    answer_after: str = ""  # keep only the text after the last marker (e.g. "</think>")
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    path: str
    preset: str = "plain"
    fields: dict[str, str] = field(default_factory=dict)
    limit: int = 0


@dataclass(frozen=True)
class VerifierConfig:
    kind: str = "numeric"
    callable: str = ""
    timeout_s: float = 5.0
    answer_after: str = ""


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    rollouts: int = 4


@dataclass(frozen=True)
class CandidateConfig:
    student_top_k: int = 4
    teacher_top_k: int = 2
    plausibility: float = 0.0


@dataclass(frozen=True)
class ContinuationConfig:
    n: int = 16
    batch_size: int = 4096


@dataclass(frozen=True)
class NodeConfig:
    strategy: str = "all"
    budget_tokens: int = 0

    @property
    def kind(self) -> str:
        return self.strategy.split(":")[0]

    @property
    def arg(self) -> int:
        parts = self.strategy.split(":")
        return int(parts[1]) if len(parts) > 1 else 0


@dataclass(frozen=True)
class SignalConfig:
    families: tuple[str, ...] = SIGNALS
    jsd_beta: float = 0.5
    train_distribution: str = "raw"


@dataclass(frozen=True)
class ControlConfig:
    sharpened: bool = True
    sharpened_temperature: float = 0.5
    softened: bool = True
    softened_temperature: float = 2.0


@dataclass(frozen=True)
class ScoreConfig:
    """Thresholds of method.md revision 2: what is decisive, what is a label, who leads."""

    tau_stakes: float = 0.1  # a node is decisive when stakes >= tau_stakes
    plausible: float = 0.01  # pi: p or a non-control q at least this puts a candidate in C+
    epsilon: float = 0.05  # a label needs the interval beyond +-epsilon
    margin: float = 0.1  # delta: a best teacher leads the runner-up by this (cosine units)
    leader_share: float = 0.9  # ... in at least this share of the paired draws
    rho: float = 0.05  # beyond is NULL when |Pg|^2 or |Pd|^2 keeps less than rho of the norm


@dataclass(frozen=True)
class MemoryConfig:
    max_resident_models: int = 0  # 0 = no limit
    score_chunk: int = 256  # positions per full-vocabulary chunk
    question_batch: int = 8  # questions per model visit when max_resident_models > 0


@dataclass(frozen=True)
class ParamCheckConfig:
    nodes: int = 0  # per rollout; 0 = off
    groups: tuple[str, ...] = ()  # parameter-name prefixes; empty = every parameter


@dataclass(frozen=True)
class RunConfig:
    source: Path
    output_dir: Path
    seed: int
    device: str
    dtype: str
    student: StudentConfig
    teachers: tuple[TeacherConfig, ...]
    derived: DerivedConfig
    contexts: tuple[ContextConfig, ...]
    data: DataConfig
    verifier: VerifierConfig
    sampling: SamplingConfig
    candidates: CandidateConfig
    continuations: ContinuationConfig
    nodes: NodeConfig
    signals: SignalConfig
    controls: ControlConfig
    bootstrap_draws: int
    scores: ScoreConfig
    memory: MemoryConfig
    param_check: ParamCheckConfig
    raw_toml: str

    @property
    def all_teachers(self) -> tuple[TeacherConfig, ...]:
        """Configured teachers followed by the controls, in storage order."""
        out = list(self.teachers)
        c = self.controls
        if c.sharpened:
            out.append(TeacherConfig(
                CONTROL_SHARPENED, "control", "", self.student.prompt, c.sharpened_temperature,
                f"student at T={c.sharpened_temperature:g}: pure sharpening, no knowledge", True))
        first_ext = next((t for t in self.teachers if t.kind == "external"), None)
        if c.softened and first_ext is not None:
            out.append(TeacherConfig(
                CONTROL_SOFTENED, "control", first_ext.model, first_ext.prompt,
                first_ext.temperature * c.softened_temperature,
                f"{first_ext.name} at T={c.softened_temperature:g}: same knowledge, softer", True))
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
        """Hash of everything that changes results (output dir, memory, batch size excluded)."""
        d = asdict(self)
        for k in ("source", "output_dir", "raw_toml", "memory"):
            d.pop(k)
        d["continuations"].pop("batch_size")
        portable = self.portable
        d["student"]["model"] = portable(d["student"]["model"])
        d["data"]["path"] = portable(d["data"]["path"])
        for t in d["teachers"]:
            t["model"] = portable(t["model"]) if t["model"] else ""
        for c in d["contexts"]:
            c["model"] = c["model"] if c["model"] == "student" else portable(c["model"])
        # a config that uses neither feature hashes as it did before they existed
        if not d["contexts"]:
            d.pop("contexts")
        if self.derived == DerivedConfig():
            d.pop("derived")
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------------------------
# Validation

_SECTIONS: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    # key: (type, default); a default of ... means required
    "": {"output_dir": (str, "runs/run"), "seed": (int, 0), "device": (str, "auto"),
         "dtype": (str, "auto")},
    "student": {"model": (str, ...), "prompt": (str, "{question}"), "chat_template": (bool, False),
                "system_prompt": (str, ""), "chat_template_kwargs": (dict, {})},
    "data": {"path": (str, ...), "preset": (str, "plain"), "fields": (dict, {}),
             "limit": (int, 0)},
    "verifier": {"kind": (str, "numeric"), "callable": (str, ""),
                 "timeout_s": ((int, float), 5.0), "answer_after": (str, "")},
    "sampling": {"temperature": ((int, float), 1.0), "top_p": ((int, float), 1.0),
                 "top_k": (int, 0), "max_new_tokens": (int, 64), "rollouts": (int, 4)},
    "candidates": {"student_top_k": (int, 4), "teacher_top_k": (int, 2),
                   "plausibility": ((int, float), 0.0)},
    "continuations": {"n": (int, 16), "batch_size": (int, 4096)},
    "nodes": {"strategy": (str, "entropy:32"), "budget_tokens": (int, 0)},
    "signals": {"families": (list, list(SIGNALS)), "jsd_beta": ((int, float), 0.5),
                "train_distribution": (str, "raw")},
    "controls": {"sharpened": (bool, True), "sharpened_temperature": ((int, float), 0.5),
                 "softened": (bool, True), "softened_temperature": ((int, float), 2.0)},
    "bootstrap": {"draws": (int, 200)},
    "scores": {"tau_stakes": ((int, float), 0.1), "plausible": ((int, float), 0.01),
               "epsilon": ((int, float), 0.05), "margin": ((int, float), 0.1),
               "leader_share": ((int, float), 0.9), "rho": ((int, float), 0.05)},
    "memory": {"max_resident_models": (int, 0), "score_chunk": (int, 256),
               "question_batch": (int, 8)},
    "param_check": {"nodes": (int, 0), "groups": (list, [])},
    "derived": {"few_shot": (int, 0),
                "few_shot_template": (str, "Question: {question}\nSolution: {solution}"),
                "contrastive_missing": (str, "solution"), "contrastive_after": (str, "")},
}
_ARRAYS = ("teachers", "contexts")
"""Top-level arrays of tables: [[teachers]], [[contexts]]."""
_TEACHER_KEYS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "name": (str, ...), "kind": (str, ...), "model": (str, ""), "prompt": (str, "{question}"),
    "temperature": ((int, float), 1.0), "description": (str, ""),
}
_CONTEXT_KEYS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "name": (str, ...), "model": (str, ...), "prompt": (str, ...), "chat_template": (bool, False),
    "system_prompt": (str, ""), "chat_template_kwargs": (dict, {}), "answer_after": (str, ""),
    "temperature": ((int, float), 1.0), "top_p": ((int, float), 1.0), "top_k": (int, 0),
    "max_new_tokens": (int, 256), "seed": (int, 0),
}
DERIVED_FIELDS = ("few_shot", "contrastive_correct", "contrastive_incorrect")
"""Placeholders the engine fills (engine.inputs.contexts); [[contexts]] names may not take them."""
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a table",
               list: "a list", (int, float): "a number"}
_STRATEGY = re.compile(r"^(all|adaptive|stride:[1-9]\d*|entropy:[1-9]\d*)$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def _typed(value: Any, typ: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and typ is not bool:
        return False
    return isinstance(value, typ)


def _section(raw: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    spec = _SECTIONS[name]
    where = f"[{name}]" if name else "top level"
    table = raw if name == "" else raw.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table, e.g. [{name}]")
        return {k: d for k, (_, d) in spec.items() if d is not ...}
    out: dict[str, Any] = {}
    for key, value in table.items():
        if name == "" and (key in _SECTIONS or key in _ARRAYS):
            continue
        if key not in spec:
            known = ", ".join(spec)
            problems.append(f"{where}: unknown key '{key}' (known keys: {known})")
            continue
        typ = spec[key][0]
        if not _typed(value, typ):
            problems.append(f"{where}: '{key}' must be {_TYPE_NAMES[typ]}, got {value!r}")
            continue
        out[key] = value
    for key, (_, default) in spec.items():
        if key not in out:
            if default is ...:
                if key not in table:
                    problems.append(f"{where}: '{key}' is required")
                out[key] = ""
            else:
                out[key] = default
    return out


def _check_range(problems: list[str], where: str, ok: bool, msg: str) -> None:
    if not ok:
        problems.append(f"{where}: {msg}")


def _resolve(base: Path, path: str) -> str:
    """Local paths relative to the config; anything else (hub ids) unchanged."""
    if not path:
        return path
    p = Path(path).expanduser()
    cand = p if p.is_absolute() else base / p
    if cand.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        return str(cand)
    return path  # looks like a hub id "org/name"


def parse_config(path: Path, *, data_override: str | None = None) -> RunConfig:
    """Read and validate a config file. Raises ConfigError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file {path} does not exist; pass the path of a TOML file"])
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path} is not valid TOML: {e}"]) from None
    return config_from_dict(raw, base=path.parent.resolve(), source=path, raw_toml=text,
                            data_override=data_override)


def config_from_dict(raw: dict[str, Any], *, base: Path, source: Path, raw_toml: str = "",
                     data_override: str | None = None) -> RunConfig:
    problems: list[str] = []
    for key in raw:
        if key not in _SECTIONS[""] and key not in _SECTIONS and key not in _ARRAYS:
            problems.append(f"top level: unknown key or table '{key}' (known: "
                            f"{', '.join([*_SECTIONS[''], *list(_SECTIONS)[1:], *_ARRAYS])})")
    s = {name: _section(raw, name, problems) for name in _SECTIONS}
    top = s[""]

    _check_range(problems, "top level", top["device"] in ("auto", "cpu", "cuda")
                 or re.fullmatch(r"cuda:\d+", top["device"]) is not None,
                 f"device must be auto, cpu, cuda or cuda:N, got {top['device']!r}")
    _check_range(problems, "top level", top["dtype"] in DTYPES,
                 f"dtype must be one of {', '.join(DTYPES)}, got {top['dtype']!r}")

    sm = s["sampling"]
    _check_range(problems, "[sampling]", sm["temperature"] > 0, "temperature must be > 0")
    _check_range(problems, "[sampling]", 0 < sm["top_p"] <= 1, "top_p must be in (0, 1]")
    _check_range(problems, "[sampling]", sm["top_k"] >= 0, "top_k must be >= 0 (0 = off)")
    _check_range(problems, "[sampling]", sm["max_new_tokens"] >= 1, "max_new_tokens must be >= 1")
    _check_range(problems, "[sampling]", sm["rollouts"] >= 1, "rollouts (G) must be >= 1")
    cd = s["candidates"]
    _check_range(problems, "[candidates]", cd["student_top_k"] >= 0, "student_top_k must be >= 0")
    _check_range(problems, "[candidates]", cd["teacher_top_k"] >= 0, "teacher_top_k must be >= 0")
    _check_range(problems, "[candidates]", 0 <= cd["plausibility"] < 1,
                 "plausibility must be in [0, 1) (0 = off)")
    ct = s["continuations"]
    _check_range(problems, "[continuations]", ct["n"] >= 2,
                 "n must be >= 2 (cross-fitting splits continuations in halves)")
    _check_range(problems, "[continuations]", ct["batch_size"] >= 1, "batch_size must be >= 1")
    nd = s["nodes"]
    _check_range(problems, "[nodes]", _STRATEGY.match(nd["strategy"]) is not None,
                 f"strategy must be all, stride:S, entropy:N or adaptive, got {nd['strategy']!r}")
    _check_range(problems, "[nodes]", nd["budget_tokens"] >= 0, "budget_tokens must be >= 0")
    sg = s["signals"]
    fams = sg["families"]
    bad = [f for f in fams if f not in SIGNALS]
    _check_range(problems, "[signals]", not bad and len(fams) > 0,
                 f"families must be a non-empty subset of {list(SIGNALS)}, got {fams!r}")
    _check_range(problems, "[signals]", 0 <= sg["jsd_beta"] <= 1, "jsd_beta must be in [0, 1]")
    _check_range(problems, "[signals]", sg["train_distribution"] in ("raw", "sampling"),
                 "train_distribution must be raw or sampling")
    cc = s["controls"]
    _check_range(problems, "[controls]", cc["sharpened_temperature"] > 0,
                 "sharpened_temperature must be > 0")
    _check_range(problems, "[controls]", cc["softened_temperature"] > 0,
                 "softened_temperature must be > 0")
    _check_range(problems, "[bootstrap]", s["bootstrap"]["draws"] >= 20,
                 "draws must be >= 20 (intervals need enough draws)")
    sc = s["scores"]
    for key in ("tau_stakes", "plausible", "epsilon", "rho"):
        _check_range(problems, "[scores]", 0 <= sc[key] <= 1, f"{key} must be in [0, 1]")
    _check_range(problems, "[scores]", 0 <= sc["margin"] <= 2,
                 "margin must be in [0, 2] (cosine units)")
    _check_range(problems, "[scores]", 0 < sc["leader_share"] <= 1,
                 "leader_share must be in (0, 1]")
    mm = s["memory"]
    _check_range(problems, "[memory]", mm["max_resident_models"] >= 0,
                 "max_resident_models must be >= 0 (0 = no limit)")
    _check_range(problems, "[memory]", mm["score_chunk"] >= 1, "score_chunk must be >= 1")
    _check_range(problems, "[memory]", mm["question_batch"] >= 1,
                 "question_batch must be >= 1")
    pc = s["param_check"]
    _check_range(problems, "[param_check]", pc["nodes"] >= 0, "nodes must be >= 0 (0 = off)")
    _check_range(problems, "[param_check]", all(isinstance(g, str) for g in pc["groups"]),
                 "groups must be a list of parameter-name prefixes, e.g. [\"lm_head\"]")

    vf = s["verifier"]
    _check_range(problems, "[verifier]", vf["kind"] in VERIFIER_KINDS,
                 f"kind must be one of {', '.join(VERIFIER_KINDS)}, got {vf['kind']!r}")
    if vf["kind"] == "callable" and ":" not in vf["callable"]:
        problems.append("[verifier]: kind = 'callable' needs callable = 'module:function'")
    _check_range(problems, "[verifier]", vf["timeout_s"] > 0, "timeout_s must be > 0")

    dt = s["data"]
    if data_override:
        dt["path"] = data_override
    _check_range(problems, "[data]", dt["preset"] in PRESETS,
                 f"preset must be one of {', '.join(PRESETS)}, got {dt['preset']!r}")
    _check_range(problems, "[data]", dt["limit"] >= 0, "limit must be >= 0 (0 = all)")
    if dt["path"]:
        dpath = Path(_resolve(base, dt["path"]))
        if not dpath.is_file():
            problems.append(f"[data]: question file {dpath} does not exist")
        dt["path"] = str(dpath)

    st = s["student"]
    if st["model"]:
        st["model"] = _resolve(base, st["model"])
        _check_model_path(problems, "[student]", st["model"])
    problems.extend(_check_template(st["prompt"], "[student] prompt", dt["fields"]))

    teachers: list[TeacherConfig] = []
    raw_teachers = raw.get("teachers", [])
    if not isinstance(raw_teachers, list):
        problems.append("teachers must be an array of tables: [[teachers]]")
        raw_teachers = []
    names: set[str] = set()
    for i, t in enumerate(raw_teachers):
        where = f"[[teachers]] #{i + 1}"
        tv = _array_item(t, _TEACHER_KEYS, where, problems)
        if tv is None:
            continue
        name = tv["name"]
        if name:
            where = f"teacher '{name}'"
            if not _NAME.match(name):
                problems.append(f"{where}: name must start with a letter and use letters, digits, "
                                "_ or -")
            if name in names or name in (CONTROL_SHARPENED, CONTROL_SOFTENED):
                problems.append(f"{where}: duplicate or reserved name")
            names.add(name)
        if tv["kind"] not in ("external", "self"):
            problems.append(f"{where}: kind must be 'external' or 'self', got {tv['kind']!r}")
        if tv["kind"] == "external":
            if not tv["model"]:
                problems.append(f"{where}: an external teacher needs model = '<dir or hub id>'")
            else:
                tv["model"] = _resolve(base, tv["model"])
                _check_model_path(problems, where, tv["model"])
        elif tv["kind"] == "self" and tv["model"]:
            problems.append(f"{where}: a self teacher uses the student's weights; remove 'model'")
        _check_range(problems, where, tv["temperature"] > 0, "temperature must be > 0")
        problems.extend(_check_template(tv["prompt"], f"{where} prompt", dt["fields"]))
        teachers.append(TeacherConfig(tv["name"], tv["kind"], tv["model"], tv["prompt"],
                                      float(tv["temperature"]), tv["description"]))
    if not teachers:
        problems.append("no teachers: add at least one [[teachers]] table (kind = external | self)")
    derived = _derived(s["derived"], problems)
    contexts = _contexts(raw.get("contexts", []), base, dt["fields"], problems)

    if problems:
        raise ConfigError(problems)
    out_dir = Path(top["output_dir"]).expanduser()
    if not out_dir.is_absolute():
        out_dir = Path.cwd() / out_dir if source.name == "<default>" else base / out_dir
    return RunConfig(
        source=source, output_dir=out_dir, seed=top["seed"], device=top["device"],
        dtype=top["dtype"],
        student=StudentConfig(st["model"], st["prompt"], st["chat_template"], st["system_prompt"],
                              dict(st["chat_template_kwargs"])),
        teachers=tuple(teachers),
        derived=derived,
        contexts=contexts,
        data=DataConfig(dt["path"], dt["preset"], dict(dt["fields"]), dt["limit"]),
        verifier=VerifierConfig(vf["kind"], vf["callable"], float(vf["timeout_s"]),
                                vf["answer_after"]),
        sampling=SamplingConfig(float(sm["temperature"]), float(sm["top_p"]), sm["top_k"],
                                sm["max_new_tokens"], sm["rollouts"]),
        candidates=CandidateConfig(cd["student_top_k"], cd["teacher_top_k"],
                                   float(cd["plausibility"])),
        continuations=ContinuationConfig(ct["n"], ct["batch_size"]),
        nodes=NodeConfig(nd["strategy"], nd["budget_tokens"]),
        signals=SignalConfig(tuple(fams), float(sg["jsd_beta"]), sg["train_distribution"]),
        controls=ControlConfig(cc["sharpened"], float(cc["sharpened_temperature"]),
                               cc["softened"], float(cc["softened_temperature"])),
        bootstrap_draws=s["bootstrap"]["draws"],
        scores=ScoreConfig(*(float(sc[k]) for k in ("tau_stakes", "plausible", "epsilon",
                                                     "margin", "leader_share", "rho"))),
        memory=MemoryConfig(mm["max_resident_models"], mm["score_chunk"],
                            mm["question_batch"]),
        param_check=ParamCheckConfig(pc["nodes"], tuple(pc["groups"])),
        raw_toml=raw_toml,
    )


def _array_item(item: Any, keys: dict[str, tuple[type | tuple[type, ...], Any]], where: str,
                problems: list[str]) -> dict[str, Any] | None:
    """One table of a [[...]] array: known keys of the right type, defaults filled in."""
    if not isinstance(item, dict):
        problems.append(f"{where} must be a table")
        return None
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key not in keys:
            problems.append(f"{where}: unknown key '{key}' (known: {', '.join(keys)})")
        elif not _typed(value, keys[key][0]):
            problems.append(f"{where}: '{key}' must be {_TYPE_NAMES[keys[key][0]]}")
        else:
            out[key] = value
    for key, (_, default) in keys.items():
        if key not in out:
            if default is ... and key not in item:
                problems.append(f"{where}: '{key}' is required")
            out[key] = "" if default is ... else default
    return out


def _derived(dv: dict[str, Any], problems: list[str]) -> DerivedConfig:
    _check_range(problems, "[derived]", dv["few_shot"] >= 0, "few_shot must be >= 0 (0 = off)")
    _check_range(problems, "[derived]", dv["contrastive_missing"] in ("solution", "skip"),
                 "contrastive_missing must be 'solution' (use the reference solution) or 'skip' "
                 f"(the teacher is NULL at that rollout), got {dv['contrastive_missing']!r}")
    problems.extend(_check_template(dv["few_shot_template"], "[derived] few_shot_template", {}))
    return DerivedConfig(dv["few_shot"], dv["few_shot_template"], dv["contrastive_missing"],
                         dv["contrastive_after"])


def _contexts(raw: Any, base: Path, fields: dict[str, str], problems: list[str]
              ) -> tuple[ContextConfig, ...]:
    """[[contexts]]: generated texts, one per question, each a placeholder named after it."""
    if not isinstance(raw, list):
        problems.append("contexts must be an array of tables: [[contexts]]")
        return ()
    out: list[ContextConfig] = []
    seen: set[str] = set()
    for i, c in enumerate(raw):
        cv = _array_item(c, _CONTEXT_KEYS, f"[[contexts]] #{i + 1}", problems)
        if cv is None:
            continue
        where = f"context '{cv['name']}'" if cv["name"] else f"[[contexts]] #{i + 1}"
        if cv["name"]:
            if not cv["name"].isidentifier():
                problems.append(f"{where}: name must be a placeholder name (letters, digits, _), "
                                "it is used as {" + cv["name"] + "} in teacher prompts")
            if cv["name"] in seen or cv["name"] in DERIVED_FIELDS:
                problems.append(f"{where}: duplicate or reserved name (reserved: "
                                f"{', '.join(DERIVED_FIELDS)})")
            seen.add(cv["name"])
        if cv["model"] and cv["model"] != "student":
            cv["model"] = _resolve(base, cv["model"])
            _check_model_path(problems, where, cv["model"])
        _check_range(problems, where, cv["temperature"] > 0, "temperature must be > 0")
        _check_range(problems, where, 0 < cv["top_p"] <= 1, "top_p must be in (0, 1]")
        _check_range(problems, where, cv["top_k"] >= 0, "top_k must be >= 0 (0 = off)")
        _check_range(problems, where, cv["max_new_tokens"] >= 1, "max_new_tokens must be >= 1")
        if not cv["chat_template"] and (cv["system_prompt"] or cv["chat_template_kwargs"]):
            problems.append(f"{where}: system_prompt and chat_template_kwargs apply only with "
                            "chat_template = true; set it or remove them")
        problems.extend(_check_template(cv["prompt"], f"{where} prompt", fields))
        out.append(ContextConfig(
            cv["name"], cv["model"], cv["prompt"], cv["chat_template"], cv["system_prompt"],
            dict(cv["chat_template_kwargs"]), cv["answer_after"], float(cv["temperature"]),
            float(cv["top_p"]), cv["top_k"], cv["max_new_tokens"], cv["seed"]))
    return tuple(out)


def _check_template(template: str, where: str, mapping: dict[str, str]) -> list[str]:
    """Malformed templates are config errors. Whether each placeholder names a field is checked
    against the dataset's actual rows (engine.inputs.preflight), since any column of a row is a
    field."""
    from engine.inputs.prompts import TemplateError, template_fields

    try:
        template_fields(template)
    except TemplateError as e:
        return [f"{where}: {e}"]
    return []


def _check_model_path(problems: list[str], where: str, model: str) -> None:
    p = Path(model)
    looks_local = p.is_absolute() or model.startswith(".")
    if looks_local and not p.exists():
        problems.append(f"{where}: model directory {model} does not exist")
    elif p.is_dir() and not (p / "config.json").exists():
        problems.append(f"{where}: {model} has no config.json; point to a saved model directory")

"""Generation parameters that image tools embed in their files, parsed into one shape.

Supported writers:

- Stable Diffusion WebUI (AUTOMATIC1111, Forge, SD.Next): the ``parameters`` PNG text chunk, or the EXIF
  UserComment of JPEG/WebP files; "infotext" lines ``<prompt>\\nNegative prompt: ...\\nSteps: 20, ...``.
- ComfyUI: the ``prompt`` PNG chunk (the API graph that ran) and ``workflow`` (the editor graph).
- InvokeAI: the ``invokeai_metadata`` PNG chunk.
- Fooocus-style JSON in the ``parameters`` chunk.

Every parser is a pure function of strings or decoded JSON, returns None when the input is not its
format, and never raises on malformed or hostile input. Results are bounded in size (see the limits below)
because the input comes from arbitrary files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

import attrs

MAX_TEXT = 65_536
"""Longest prompt (characters) kept; longer text is cut."""
MAX_VALUE = 4_096
"""Longest single parameter value (characters) kept."""
MAX_PARAMETERS = 100
"""Most parameters kept per file."""
MAX_COMFY_NODES = 10_000
"""Larger ComfyUI graphs are not walked (only counted)."""

_SEED_MIN, _SEED_MAX = -(2**63), 2**63 - 1
_INT_RE = re.compile(r"^-?(?:0|[1-9]\d{0,17})$")
_FLOAT_RE = re.compile(r"^-?(?:\d{1,18}\.\d{1,18}|\.\d{1,18})$")
_KEY_RE = re.compile(r"^\w[\w \-/]{0,63}$")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")
_PARAM_MARKERS = frozenset({"steps", "seed", "sampler", "cfg_scale"})


@attrs.frozen(kw_only=True)
class GenerationInfo:
    """What one file says about how it was generated.

    ``parameters`` holds everything besides prompt, negative prompt, seed and model, with snake_case keys
    (``steps``, ``sampler``, ``cfg_scale``, ...) and numbers as numbers. ``summary`` holds small facts for
    the asset's ``extra`` (never whole graphs).
    """

    generator: str
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    parameters: dict[str, Any] = attrs.field(factory=dict)
    summary: dict[str, Any] = attrs.field(factory=dict)


# -- helpers -----------------------------------------------------------------------------------------------


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """Text safe to store: no NUL, no lone surrogates (from lenient decoding), at most ``limit`` chars."""
    value = value.replace("\x00", "")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit]


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = clean_text(value).strip()
    return cleaned or None


def normalize_key(key: str) -> str:
    """``"CFG scale"`` -> ``"cfg_scale"``: one vocabulary for parameters from every tool."""
    return _NON_WORD.sub("_", key.strip().lower()).strip("_")


def _number(value: str) -> int | float | str:
    if _INT_RE.match(value):
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    return value


def _scalar(value: Any) -> Any:
    """A JSON scalar fit for ``parameters``, or None to drop the value."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if _SEED_MIN <= value <= _SEED_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value, MAX_VALUE)
    return None


def to_seed(value: Any) -> int | None:
    """A seed as a signed 64-bit integer, from an int or a decimal string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        value = int(value.strip())
    if isinstance(value, int) and _SEED_MIN <= value <= _SEED_MAX:
        return value
    return None


def model_name(value: Any) -> str | None:
    """A checkpoint file name as a model name: no folders, no weight-file extension."""
    text = _text(value)
    if text is None:
        return None
    base = text.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in _WEIGHT_SUFFIXES:
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _put(parameters: dict[str, Any], key: str, value: Any) -> None:
    if len(parameters) >= MAX_PARAMETERS or not key:
        return
    value = _scalar(value)
    if value is not None and value != "":
        parameters.setdefault(key, value)


def _load_json(value: Any) -> Any:
    if isinstance(value, (Mapping, list)):
        return value
    if not isinstance(value, (str, bytes)):
        return None
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


# -- AUTOMATIC1111 / Forge infotext ----------------------------------------------------------------------


def _scan_quoted(line: str, start: int) -> int | None:
    """Index just past the closing quote of a JSON-style string starting at ``start``, or None."""
    i = start + 1
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    return None


def split_infotext_params(line: str) -> list[tuple[str, str]]:
    """``"Steps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: 2""`` -> key/value pairs.

    Values may be double-quoted (JSON escapes) and then contain commas. Segments without a valid key are
    skipped. Linear in the line length (a regular expression here backtracks quadratically on hostile
    input).
    """
    pairs: list[tuple[str, str]] = []
    n = len(line)
    i = 0
    while i < n:
        comma = line.find(",", i)
        end = n if comma < 0 else comma
        colon = line.find(":", i, end)
        if colon < 0:
            i = end + 1
            continue
        key = line[i:colon].strip()
        j = colon + 1
        while j < n and line[j] == " ":
            j += 1
        if j < n and line[j] == '"' and (close := _scan_quoted(line, j)) is not None:
            value = line[j:close]
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
            following = line.find(",", close)
            i = n if following < 0 else following + 1
        else:
            value = line[j:end].strip()
            i = end + 1
        if _KEY_RE.match(key):
            pairs.append((key, value))
    return pairs


def _is_param_line(pairs: list[tuple[str, str]]) -> bool:
    # WebUI itself accepts any line with three pairs; also demanding one of its always-present keys keeps
    # a prompt like "style: anime, mood: calm, light: soft" a prompt.
    return len(pairs) >= 3 and any(normalize_key(k) in _PARAM_MARKERS for k, _ in pairs)


def parse_a1111(text: str, *, strict: bool = False) -> GenerationInfo | None:
    """Parse WebUI infotext.

    With ``strict=False`` (the PNG ``parameters`` chunk, which only WebUI-style tools write) text that has
    neither a parameter line nor a negative prompt is returned whole as the prompt. With ``strict=True``
    (EXIF comments, which any camera or editor may fill) such text gives None.
    """
    if not isinstance(text, str):
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return None
    *lines, last = text.split("\n")
    pairs = split_infotext_params(last) if len(last) <= 10 * MAX_TEXT else []
    if not _is_param_line(pairs):
        lines.append(last)
        pairs = []

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)

    if not pairs and not in_negative:
        if strict:
            return None
        return GenerationInfo(generator="a1111", prompt=_text(text))

    info: dict[str, Any] = {"generator": "a1111"}
    info["prompt"] = _text("\n".join(prompt_lines))
    info["negative_prompt"] = _text("\n".join(negative_lines))
    parameters: dict[str, Any] = {}
    for raw_key, raw_value in pairs:
        key = normalize_key(raw_key)
        value = raw_value if isinstance(raw_value, str) else json.dumps(raw_value)
        if key == "seed" and info.get("seed") is None and (seed := to_seed(value)) is not None:
            info["seed"] = seed
        elif key == "model" and info.get("model") is None and _text(value):
            info["model"] = _text(value)
        elif key.endswith(("hash", "hashes")) or key == "version":
            # Hashes such as "0123456789" and versions such as "1.10" are identifiers, not numbers.
            _put(parameters, key, value.strip())
        else:
            _put(parameters, key, _number(value.strip()))
    info["parameters"] = parameters
    return GenerationInfo(**info)


# -- ComfyUI -----------------------------------------------------------------------------------------------

_SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_LINKED_VALUES = ("value", "seed", "int", "string")
_TEXT_INPUTS = ("text", "text_g", "text_l", "string", "value", "prompt", "positive", "negative")


def _is_link(value: Any) -> TypeGuard[list[Any]]:
    """A ComfyUI input wired to another node's output: ``[node_id, output_index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
    )


class _Graph:
    def __init__(self, nodes: Mapping[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in nodes.items() if isinstance(v, Mapping)}

    def node(self, link: Any) -> Mapping[str, Any] | None:
        return self.nodes.get(str(link[0])) if _is_link(link) else None

    @staticmethod
    def inputs(node: Mapping[str, Any]) -> Mapping[str, Any]:
        inputs = node.get("inputs")
        return inputs if isinstance(inputs, Mapping) else {}

    @staticmethod
    def class_type(node: Mapping[str, Any]) -> str:
        value = node.get("class_type")
        return value if isinstance(value, str) else ""

    def resolve(self, node: Mapping[str, Any], names: tuple[str, ...], seen: set[str] | None = None) -> Any:
        """The first literal input among ``names``, following links to primitive/helper nodes.

        Each node is visited at most once per call, so cyclic or deep graphs cost at most one pass.
        """
        seen = set() if seen is None else seen
        inputs = self.inputs(node)
        for name in names:
            value = inputs.get(name)
            if not _is_link(value):
                if value is not None:
                    return value
                continue
            target_id = str(value[0])
            target = self.nodes.get(target_id)
            if target is None or target_id in seen:
                continue
            seen.add(target_id)
            found = self.resolve(target, tuple(dict.fromkeys((name, *names, *_LINKED_VALUES))), seen)
            if found is not None:
                return found
        return None

    def upstream(self, node: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
        return self.node(self.inputs(node).get(name))

    def texts(self, start: Any, polarity: str) -> list[str]:
        """Prompt texts feeding a conditioning link, through combine/ControlNet/area nodes."""
        found: list[str] = []
        seen: set[str] = set()
        stack = [start]
        while stack and len(seen) < 64:
            link = stack.pop()
            if not _is_link(link) or str(link[0]) in seen:
                continue
            seen.add(str(link[0]))
            node = self.node(link)
            if node is None:
                continue
            inputs = self.inputs(node)
            for name in ("text", "text_g", "text_l"):
                value = inputs.get(name)
                if _is_link(value):
                    target = self.node(value)
                    value = self.resolve(target, _TEXT_INPUTS) if target is not None else None
                text = _text(value)
                if text is not None and text not in found:
                    found.append(text)
            for name, value in inputs.items():
                if _is_link(value) and ("conditioning" in name or name == polarity):
                    stack.append(value)
        return found

    def model(self, sampler: Mapping[str, Any]) -> tuple[str | None, list[str]]:
        """The checkpoint (or diffusion model) file behind a sampler, and the LoRAs on the way."""
        loras: list[str] = []
        start = self.inputs(sampler).get("model")
        guider = self.upstream(sampler, "guider")
        if start is None and guider is not None:
            start = self.inputs(guider).get("model")
        link, hops = start, 0
        while _is_link(link) and hops < 32:
            hops += 1
            node = self.node(link)
            if node is None:
                break
            inputs = self.inputs(node)
            lora = inputs.get("lora_name")
            if isinstance(lora, str) and (name := model_name(lora)) and name not in loras:
                loras.append(name)
            for key in ("ckpt_name", "unet_name", "model_name"):
                if isinstance(inputs.get(key), str):
                    return inputs[key], loras
            link = inputs.get("model")
        for _, node in sorted(self.nodes.items()):
            ckpt = self.inputs(node).get("ckpt_name")
            if isinstance(ckpt, str):
                return ckpt, loras
        return None, loras


def _node_order(item: tuple[str, Mapping[str, Any]]) -> tuple[int, int, str]:
    node_id, node = item
    inputs = _Graph.inputs(node)
    # The first pass of a two-pass (hires fix) workflow denoises fully and starts at step 0.
    denoise = inputs.get("denoise", 1.0)
    first_pass = (not isinstance(denoise, (int, float)) or denoise >= 1.0) and inputs.get(
        "start_at_step", 0
    ) in (0, None)
    return (0 if first_pass else 1, int(node_id) if node_id.isdigit() else 1 << 62, node_id)


def parse_comfyui(prompt: Any, workflow: Any = None) -> GenerationInfo | None:
    """Parse a ComfyUI API graph (``{node_id: {"class_type": ..., "inputs": {...}}}``).

    ``prompt`` and ``workflow`` may be JSON text or decoded. Finds the sampler, follows its
    ``positive``/``negative`` links to the prompt texts and its ``model`` link to the checkpoint. With only
    a workflow (editor graph), the result names the generator and counts nodes.
    """
    graph_data = _load_json(prompt)
    workflow_data = _load_json(workflow)
    summary: dict[str, Any] = {}
    if isinstance(workflow_data, Mapping) and isinstance(workflow_data.get("nodes"), list):
        summary["comfyui_workflow_nodes"] = len(workflow_data["nodes"])
    if not isinstance(graph_data, Mapping) or not graph_data:
        return GenerationInfo(generator="comfyui", summary=summary) if summary else None
    graph = _Graph(graph_data)
    if not graph.nodes:
        return GenerationInfo(generator="comfyui", summary=summary) if summary else None
    summary["comfyui_nodes"] = len(graph.nodes)
    if len(graph.nodes) > MAX_COMFY_NODES:
        return GenerationInfo(generator="comfyui", summary=summary)

    samplers = sorted(
        ((k, v) for k, v in graph.nodes.items() if graph.class_type(v) in _SAMPLERS), key=_node_order
    )
    if not samplers:
        return GenerationInfo(generator="comfyui", summary=summary)
    sampler = samplers[0][1]
    parameters: dict[str, Any] = {"sampler_node": graph.class_type(sampler)}
    if len(samplers) > 1:
        parameters["samplers"] = len(samplers)

    # SamplerCustomAdvanced spreads the settings over noise, guider, sampler and sigmas nodes.
    noise = graph.upstream(sampler, "noise")
    guider = graph.upstream(sampler, "guider")
    sampler_select = graph.upstream(sampler, "sampler")
    sigmas = graph.upstream(sampler, "sigmas")
    settings = [n for n in (sampler, noise, guider, sampler_select, sigmas) if n is not None]

    def first(*names: str) -> Any:
        for node in settings:
            value = graph.resolve(node, names)
            if value is not None and not _is_link(value):
                return value
        return None

    seed_value = first("seed", "noise_seed")
    seed = to_seed(seed_value)
    if seed is None and seed_value is not None:
        _put(parameters, "seed", seed_value)
    for key, names in (
        ("steps", ("steps",)),
        ("cfg_scale", ("cfg",)),
        ("sampler", ("sampler_name",)),
        ("scheduler", ("scheduler",)),
        ("denoise", ("denoise",)),
    ):
        _put(parameters, key, first(*names))

    polarity_source = guider if guider is not None and "positive" in graph.inputs(guider) else sampler
    if guider is not None and "conditioning" in graph.inputs(guider):
        positive = graph.texts(graph.inputs(guider)["conditioning"], "positive")
        negative: list[str] = []
    else:
        positive = graph.texts(graph.inputs(polarity_source).get("positive"), "positive")
        negative = graph.texts(graph.inputs(polarity_source).get("negative"), "negative")

    model_file, loras = graph.model(sampler)
    model = model_name(model_file)
    if model_file is not None and model_file != model:
        _put(parameters, "model_file", model_file)
    if loras:
        parameters["loras"] = ", ".join(loras)[:MAX_VALUE]
    return GenerationInfo(
        generator="comfyui",
        prompt=_text("\n".join(positive)),
        negative_prompt=_text("\n".join(negative)),
        seed=seed,
        model=model,
        parameters=parameters,
        summary=summary,
    )


# -- InvokeAI and JSON parameters ---------------------------------------------------------------------------


def _json_info(
    data: Mapping[str, Any],
    generator: str,
    *,
    prompt_keys: tuple[str, ...],
    negative_keys: tuple[str, ...],
    model_keys: tuple[str, ...],
) -> GenerationInfo:
    def pick(keys: tuple[str, ...]) -> tuple[str | None, Any]:
        for key in keys:
            if data.get(key) is not None:
                return key, data[key]
        return None, None

    used: set[str] = set()
    prompt_key, prompt = pick(prompt_keys)
    negative_key, negative = pick(negative_keys)
    model_key, model = pick(model_keys)
    if isinstance(model, Mapping):
        model = model.get("name") or model.get("model_name")
    used.update(k for k in (prompt_key, negative_key, model_key, "seed") if k)
    parameters: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(key, str) and key not in used:
            _put(parameters, normalize_key(key), value)
    return GenerationInfo(
        generator=generator,
        prompt=_text(prompt),
        negative_prompt=_text(negative),
        seed=to_seed(data.get("seed")),
        model=model_name(model),
        parameters=parameters,
    )


def parse_invokeai(metadata: Any) -> GenerationInfo | None:
    """Parse InvokeAI's ``invokeai_metadata`` chunk (JSON: positive_prompt, negative_prompt, seed,
    model{name}, steps, cfg_scale, scheduler, ...)."""
    data = _load_json(metadata)
    if not isinstance(data, Mapping):
        return None
    return _json_info(
        data,
        "invokeai",
        prompt_keys=("positive_prompt", "prompt"),
        negative_keys=("negative_prompt",),
        model_keys=("model",),
    )


def parse_json_parameters(text: str, *, scheme: str | None = None) -> GenerationInfo | None:
    """Parse a JSON object in the ``parameters`` chunk (Fooocus writes one; ``scheme`` is the value of its
    ``fooocus_scheme`` chunk)."""
    data = _load_json(text)
    if not isinstance(data, Mapping):
        return None
    return _json_info(
        data,
        "fooocus" if scheme is not None else "json",
        prompt_keys=("prompt", "full_prompt", "positive_prompt"),
        negative_keys=("negative_prompt", "full_negative_prompt"),
        model_keys=("base_model", "model"),
    )


# -- dispatch ----------------------------------------------------------------------------------------------


def from_image_text(
    chunks: Mapping[str, str], *, user_comment: str | None = None, comment: str | None = None
) -> GenerationInfo | None:
    """Generation info from an image's text chunks (PNG) and comments (EXIF UserComment, JPEG COM).

    The WebUI ``parameters`` chunk wins when it has parameters; then ComfyUI, InvokeAI, and finally
    WebUI-style text in the comments.
    """
    fallback: GenerationInfo | None = None
    parameters = chunks.get("parameters")
    if isinstance(parameters, str) and parameters.strip():
        if parameters.lstrip().startswith("{"):
            found = parse_json_parameters(parameters, scheme=chunks.get("fooocus_scheme"))
            if found is not None:
                return found
        found = parse_a1111(parameters)
        if found is not None and (found.parameters or found.negative_prompt or found.seed is not None):
            return found
        fallback = found
    if "prompt" in chunks or "workflow" in chunks:
        found = parse_comfyui(chunks.get("prompt"), chunks.get("workflow"))
        if found is not None:
            return found
    if "invokeai_metadata" in chunks:
        found = parse_invokeai(chunks["invokeai_metadata"])
        if found is not None:
            return found
    if fallback is not None:
        return fallback
    for text in (user_comment, comment):
        if text:
            found = parse_a1111(text, strict=True)
            if found is not None:
                return found
    return None

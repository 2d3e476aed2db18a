"""assetry-media: media type sniffing, image metadata, generation parameters, demo samples, colour embedding.

The hook is called directly with real `Content` and `AssetDraft` objects; images are real files made with
Pillow (or built chunk by chunk where the point is a malformed or hostile file).
"""

from __future__ import annotations

import io
import json
import logging
import math
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pluggy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageFile, ImageOps, PngImagePlugin

import assetry.hookspecs
from assetry.content import HEAD_SIZE, Content
from assetry.errors import ValidationError
from assetry.model import PROVENANCE_FIELDS, AssetDraft, Kind, Provenance
from assetry_media import images, plugin, sniff
from assetry_media.embed import COLOR_EMBEDDING_DIM, color_embedding
from assetry_media.generation import (
    GenerationInfo,
    parse_a1111,
    parse_comfyui,
    parse_invokeai,
    split_infotext_params,
)
from assetry_media.images import decode_user_comment
from assetry_media.plugin import MediaOptions, assetry_config_sections, assetry_ingest
from assetry_media.samples import THEMES, make_sample_images
from assetry_media.sniff import sniff_media_type

# What core accepts from an assetry_ingest hook.
FLAT_FIELDS = {"media_type", "kind", "width", "height", "duration", "tags", "extra"} | PROVENANCE_FIELDS


class Config:
    """The smallest configuration the hook needs: plugin tables by name."""

    def __init__(self, **sections: Any) -> None:
        self.sections = sections


def ingest(
    data: bytes | Path, *, name: str | None = None, draft: AssetDraft | None = None, **options: Any
) -> dict[str, Any]:
    content = Content.from_path(data) if isinstance(data, Path) else Content.from_bytes(data, name=name)
    config = Config(media=MediaOptions(**options)) if options else Config()
    result = dict(assetry_ingest(draft=draft or AssetDraft(), content=content, config=config) or {})
    assert result.keys() <= FLAT_FIELDS, result.keys() - FLAT_FIELDS
    return result


def image_bytes(fmt: str, size: tuple[int, int] = (37, 21), **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 90, 40)).save(buffer, fmt, **save)
    return buffer.getvalue()


def png_with_text(chunks: dict[str, str], size: tuple[int, int] = (64, 48)) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    return image_bytes("PNG", size, pnginfo=info)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def safetensors_bytes(header: dict[str, Any], payload: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + payload


def ogg_first_page(packet: bytes) -> bytes:
    """An Ogg stream's first page holding ``packet`` (the CRC is left zero: sniffing does not check it)."""
    header = b"OggS\x00\x02" + bytes(8) + b"\x01\x02\x03\x04" + bytes(4) + bytes(4)
    return header + bytes([1, len(packet)]) + packet


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


A1111_FULL = (
    "masterpiece, best quality, a castle on a hill,\n"
    "golden hour, (dramatic clouds:1.2)\n"
    "Negative prompt: lowres, bad anatomy,\n"
    "blurry\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3141592653, "
    "Size: 832x1216, Model hash: 0123456789, Model: juggernautXL_v9, Denoising strength: 0.35, "
    'Hires upscale: 1.5, Lora hashes: "detail: 1a2b3c, style: 4d5e6f", Version: v1.10.1'
)

COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {
            "text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle",
            "clip": ["10", 1],
        },
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "add_detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    },
}


# -- configuration and registration ----------------------------------------------------------------------


def test_config_section_claims_media_with_defaults() -> None:
    assert assetry_config_sections() == {"media": MediaOptions}
    options = MediaOptions()
    assert (options.sniff, options.extract_generation, options.max_pixels) == (True, True, 178_956_970)


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(ValidationError) as info:
        MediaOptions(max_pixels=0)
    assert info.value.field == "max_pixels"


def test_hooks_match_the_specifications() -> None:
    pm = pluggy.PluginManager("assetry")
    pm.add_hookspecs(assetry.hookspecs)
    pm.register(plugin)
    pm.check_pending()
    content = Content.from_bytes(image_bytes("PNG"), name="a.png")
    results = pm.hook.assetry_ingest(draft=AssetDraft(), content=content, config=Config())
    assert results == [{"media_type": "image/png", "kind": Kind.IMAGE, "width": 37, "height": 21}]


def test_config_without_sections_uses_defaults() -> None:
    content = Content.from_bytes(image_bytes("GIF"), name=None)
    assert assetry_ingest(draft=AssetDraft(), content=content, config=object())["media_type"] == "image/gif"


# -- media type ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (image_bytes("PNG"), None, "image/png"),
        (image_bytes("JPEG"), None, "image/jpeg"),
        (image_bytes("GIF"), None, "image/gif"),
        (image_bytes("WEBP"), None, "image/webp"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", None, "application/pdf"),
        (b'{"prompt": "a cat", "seed": 1}', None, "application/json"),
        (b"[1, 2, 3]", None, "application/json"),
        (b"just a note\nwith two lines\n", None, "text/plain"),
        ("caf\u00e9 na\u00efve \u2014 \u65e5\u672c\u8a9e\n".encode(), None, "text/plain"),
        (b"# Title\n\ntext", "notes.md", "text/markdown"),
        (safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), None,
         "application/x-safetensors"),
        (b"GGUF\x03\x00\x00\x00" + b"\x00" * 40, None, "application/x-gguf"),
        (b"GGUF\x00\x00\x00\x03" + b"\x00" * 40, None, "application/x-gguf"),
        (bytes(range(256)) * 4, None, "application/octet-stream"),
        (b"", None, "application/octet-stream"),
        (b"", "empty.txt", "text/plain"),
        (b"PK\x03\x04" + b"\x00" * 40, None, "application/zip"),
        (b"PK\x03\x04" + b"\x00" * 40, "model.pt", "application/x-pytorch"),
    ],
    ids=[
        "png", "jpeg", "gif", "webp", "pdf", "json", "json-array", "text", "utf8-text", "markdown-by-name",
        "safetensors", "gguf", "gguf-big-endian", "unknown-binary", "empty", "empty-named", "zip",
        "zip-named",
    ],
)  # fmt: skip
def test_sniff_media_type(data: bytes, name: str | None, expected: str) -> None:
    assert sniff_media_type(data, name=name, size=len(data)) == expected
    result = ingest(data, name=name)
    assert result["media_type"] == expected
    assert result["kind"] == Kind.from_media_type(expected)


def test_model_weights_are_model_kind() -> None:
    result = ingest(b"GGUF\x03\x00\x00\x00" + b"\x00" * 40, name="llama.gguf")
    assert result["kind"] == Kind.MODEL


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (b'{"a": 1}\n{"a": 2}\n', "data.jsonl", "application/jsonl"),
        (b"{draft} notes about the prompt\n", None, "text/plain"),
        (b'{"prompt": "a cat", "seed": ', None, "text/plain"),
        (b"=== Results ===\nall good\n", None, "text/plain"),
        (b"MARC" + bytes(range(256)), None, "application/octet-stream"),
    ],
    ids=["jsonl-by-name", "braces-not-json", "truncated-json", "note-not-a-patch", "binary-not-text"],
)
def test_puremagic_text_guesses_do_not_decide(data: bytes, name: str | None, expected: str) -> None:
    # puremagic calls anything starting with "{" JSON and "=== " a patch; the name and the text check decide.
    assert sniff_media_type(data, name=name, size=len(data)) == expected


VORBIS_ID = b"\x01vorbis" + bytes(23)
THEORA_ID = b"\x80theora\x03\x02\x01" + bytes(32)


@pytest.mark.parametrize(
    ("packet", "name", "expected"),
    [
        (VORBIS_ID, "speech.ogg", "audio/ogg"),
        (VORBIS_ID, None, "audio/ogg"),
        (THEORA_ID, None, "video/ogg"),
        (THEORA_ID, "clip.ogg", "video/ogg"),
        (b"OpusHead\x01\x02" + bytes(9), "voice.opus", "audio/opus"),
        (b"fishead\x00" + bytes(56), "clip.ogv", "video/ogg"),  # a skeleton stream first: the name decides
    ],
    ids=["vorbis-named", "vorbis", "theora", "theora-named-ogg", "opus-named", "skeleton-named-ogv"],
)
def test_ogg_is_audio_or_video(packet: bytes, name: str | None, expected: str) -> None:
    result = ingest(ogg_first_page(packet) + bytes(200), name=name)
    assert result["media_type"] == expected
    assert result["kind"] == Kind.from_media_type(expected) != Kind.FILE


def test_text_starting_with_the_gguf_magic_is_not_model_weights() -> None:
    note = b"GGUF quantization notes: q4_K_M is fine\n"
    assert sniff_media_type(note, name="notes.md", size=len(note)) == "text/markdown"
    assert sniff_media_type(note, size=len(note)) == "text/plain"


def test_safetensors_header_longer_than_the_sniffed_head() -> None:
    header = {
        f"layer.{i}.weight": {"dtype": "F16", "shape": [64, 64], "data_offsets": [0, 0]} for i in range(2000)
    }
    data = safetensors_bytes(header, b"\0" * 16)
    assert len(data) > 2 * HEAD_SIZE
    assert ingest(data)["media_type"] == "application/x-safetensors"


def test_length_prefix_alone_is_not_safetensors() -> None:
    data = struct.pack("<Q", 20) + b"{not json at all!!!}" + b"\xff" * 8
    assert sniff_media_type(data, size=len(data)) == "application/octet-stream"


def test_json_too_large_to_sniff_whole_is_text() -> None:
    data = json.dumps([{"item": "x" * 100}] * 2000).encode()
    assert len(data) > HEAD_SIZE
    assert ingest(data)["media_type"] == "text/plain"
    assert ingest(data, name="big.json")["media_type"] == "application/json"


def test_json_nested_deeper_than_the_parser_goes_is_text() -> None:
    data = b"[" * 30_000 + b"]" * 30_000  # complete within the head, far past Python's recursion limit
    assert len(data) <= HEAD_SIZE
    assert sniff_media_type(data, size=len(data)) == "text/plain"
    assert ingest(data)["media_type"] == "text/plain"


def test_safetensors_shaped_header_nested_too_deep_is_not_safetensors() -> None:
    header = b'{"a":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    data = struct.pack("<Q", len(header)) + header + b"\0" * 8
    assert sniff_media_type(data, size=len(data)) == "application/octet-stream"


@pytest.mark.parametrize(
    ("name", "expected"), [("notes.md", "text/markdown"), (None, "application/octet-stream")]
)
def test_a_failing_sniffer_never_fails_ingest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str | None, expected: str
) -> None:
    # Real inputs no longer make the sniffer raise (above); a stand-in fault checks the hook's own guard.
    def broken(head: bytes, **_: Any) -> str:
        raise RuntimeError("sniffer bug")

    monkeypatch.setattr(sniff, "sniff_media_type", broken)
    with caplog.at_level(logging.WARNING, logger="assetry_media"):
        result = ingest(b"# a note\n", name=name)
    assert result == {"media_type": expected, "kind": Kind.from_media_type(expected)}
    assert f"{name or '<unnamed>'}: cannot detect the media type" in caplog.text


def test_text_cut_inside_a_multibyte_character_is_still_text() -> None:
    data = ("\u00e9" * HEAD_SIZE).encode()  # two bytes per character, longer than the sniffed head
    assert ingest(data)["media_type"] == "text/plain"
    assert ingest(b"a" + data)["media_type"] == "text/plain"  # the head now ends inside a character


def test_sniff_disabled_uses_the_name_only() -> None:
    png = image_bytes("PNG")
    assert ingest(png, name="picture.png", sniff=False)["media_type"] == "image/png"
    assert "media_type" not in ingest(png, name=None, sniff=False)


# -- image dimensions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_dimensions(fmt: str) -> None:
    result = ingest(image_bytes(fmt, (123, 45)), name=None)
    assert (result["width"], result["height"]) == (123, 45)
    assert result["kind"] == Kind.IMAGE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_dimensions_are_as_displayed_after_the_exif_orientation(fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = image_bytes(fmt, (40, 20), exif=exif.tobytes())
    result = ingest(data)
    with Image.open(io.BytesIO(data)) as image:
        shown = ImageOps.exif_transpose(
            image
        ).size  # what viewers show (decodes the pixels, as ingest never does)
    quarter_turn = orientation >= 5
    assert (result["width"], result["height"]) == shown == ((20, 40) if quarter_turn else (40, 20))


def test_dimensions_from_a_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes("JPEG", (300, 200)))
    result = ingest(path)
    assert (result["media_type"], result["width"], result["height"]) == ("image/jpeg", 300, 200)


def test_svg_is_not_opened_as_raster() -> None:
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    result = ingest(svg, name="icon.svg")
    assert result["media_type"] == "image/svg+xml"
    assert "width" not in result


# -- WebUI (A1111 / Forge) infotext ----------------------------------------------------------------------


def test_a1111_full_infotext() -> None:
    info = parse_a1111(A1111_FULL)
    assert info is not None
    assert info.generator == "a1111"
    assert info.prompt == "masterpiece, best quality, a castle on a hill,\ngolden hour, (dramatic clouds:1.2)"
    assert info.negative_prompt == "lowres, bad anatomy,\nblurry"
    assert info.seed == 3141592653
    assert info.model == "juggernautXL_v9"
    assert info.parameters == {
        "steps": 30,
        "sampler": "DPM++ 2M",
        "schedule_type": "Karras",
        "cfg_scale": 7.5,
        "size": "832x1216",
        "model_hash": "0123456789",
        "denoising_strength": 0.35,
        "hires_upscale": 1.5,
        "lora_hashes": "detail: 1a2b3c, style: 4d5e6f",
        "version": "v1.10.1",
    }


def test_a1111_without_negative_prompt() -> None:
    info = parse_a1111("a photo of a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
    assert info is not None
    assert (info.prompt, info.negative_prompt, info.seed, info.model) == ("a photo of a cat", None, 1, None)
    assert info.parameters["sampler"] == "Euler a"
    assert info.parameters["cfg_scale"] == 7


def test_a1111_without_seed() -> None:
    info = parse_a1111("a dog\r\nNegative prompt: a cat\r\nSteps: 20, Sampler: Euler, CFG scale: 7")
    assert info is not None
    assert (info.prompt, info.negative_prompt, info.seed) == ("a dog", "a cat", None)
    assert "seed" not in info.parameters


def test_a1111_quoted_values_keep_commas_colons_and_escaped_quotes() -> None:
    line = 'Steps: 4, Seed: 9, Sampler: Euler, Template: "a \\"b\\", c: d", Hashes: "{\\"x\\": 1}", After: 2'
    pairs = dict(split_infotext_params(line))
    assert pairs["Template"] == 'a "b", c: d'
    assert pairs["Hashes"] == '{"x": 1}'
    assert pairs["After"] == "2"


def test_a1111_prompt_only() -> None:
    info = parse_a1111("just a prompt, nothing else")
    assert info is not None
    assert (info.prompt, info.parameters, info.seed) == ("just a prompt, nothing else", {}, None)
    assert parse_a1111("just a prompt, nothing else", strict=True) is None


def test_a1111_prompt_with_colons_is_not_a_parameter_line() -> None:
    text = "portrait\nstyle: anime, mood: calm, light: soft"
    info = parse_a1111(text)
    assert info is not None
    assert info.prompt == text
    assert info.parameters == {}


def test_a1111_seed_too_large_is_kept_as_a_parameter() -> None:
    info = parse_a1111("x\nSteps: 20, Sampler: Euler, Seed: 99999999999999999999999")
    assert info is not None
    assert info.seed is None
    assert info.parameters["seed"] == "99999999999999999999999"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n  ",
        '\x00\x01\x02 ::: ,,, :""" \ud800 Steps: , Seed: , Sampler:',
        'Steps: "unterminated, Seed: "also, Sampler: "',
        "Negative prompt:",
        ":" * 5000 + "," * 5000,
        "a, " * 100_000,
        'k: "' + "\\" * 10_001,
    ],
    ids=[
        "empty",
        "blank",
        "garbage",
        "unterminated-quotes",
        "negative-only",
        "punctuation",
        "long",
        "escapes",
    ],
)
def test_a1111_garbage_never_raises(text: str) -> None:
    info = parse_a1111(text)
    if info is not None:
        for value in (info.prompt, info.negative_prompt, info.model):
            assert value is None or ("\x00" not in value and value.encode("utf-8"))
        json.dumps(info.parameters, allow_nan=False)


# -- ComfyUI and InvokeAI --------------------------------------------------------------------------------


def test_comfyui_api_graph() -> None:
    info = parse_comfyui(json.dumps(COMFY_PROMPT), json.dumps({"nodes": [{"id": i} for i in range(9)]}))
    assert info is not None
    assert info.generator == "comfyui"
    assert info.prompt == "beautiful scenery nature glass bottle landscape, purple galaxy bottle"
    assert info.negative_prompt == "text, watermark"
    assert info.seed == 156680208700286
    assert info.model == "sd_xl_base_1.0"
    assert info.parameters == {
        "sampler_node": "KSampler",
        "steps": 20,
        "cfg_scale": 8,
        "sampler": "euler",
        "scheduler": "normal",
        "denoise": 1,
        "model_file": "SDXL/sd_xl_base_1.0.safetensors",
        "loras": "add_detail",
    }
    assert info.summary == {"comfyui_nodes": 8, "comfyui_workflow_nodes": 9}


def test_comfyui_two_pass_uses_the_first_pass_and_follows_links() -> None:
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["3"]["inputs"]["seed"] = ["12", 0]
    graph["12"] = {"class_type": "Seed (rgthree)", "inputs": {"seed": 42}}
    # The upscale pass: a second sampler with partial denoise, listed first.
    graph["1"] = {
        "class_type": "KSampler",
        "inputs": {**graph["3"]["inputs"], "seed": 7, "denoise": 0.45, "steps": 12},
    }
    graph["6"]["inputs"]["text"] = ["13", 0]
    graph["13"] = {"class_type": "PrimitiveString", "inputs": {"value": "a linked prompt"}}
    info = parse_comfyui(graph)
    assert info is not None
    assert (info.seed, info.parameters["steps"], info.parameters["samplers"]) == (42, 20, 2)
    assert info.prompt == "a linked prompt"


def test_comfyui_flux_sampler_custom_advanced() -> None:
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl.safetensors", "type": "flux"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["2", 0]}},
        "4": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["3", 0]}},
        "5": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["4", 0]}},
        "6": {"class_type": "RandomNoise", "inputs": {"noise_seed": 18446744073709551615}},
        "7": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "8": {
            "class_type": "BasicScheduler",
            "inputs": {"scheduler": "simple", "steps": 25, "denoise": 1.0, "model": ["1", 0]},
        },
        "9": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["6", 0],
                "guider": ["5", 0],
                "sampler": ["7", 0],
                "sigmas": ["8", 0],
                "latent_image": ["10", 0],
            },
        },
        "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024}},
    }
    info = parse_comfyui(graph)
    assert info is not None
    assert (info.prompt, info.negative_prompt, info.model) == ("a red fox in snow", None, "flux1-dev")
    # An unsigned 64-bit seed does not fit the catalog's signed seed; it is kept as a parameter.
    assert info.seed is None
    assert info.parameters["seed"] == "18446744073709551615"
    assert (info.parameters["steps"], info.parameters["sampler"], info.parameters["scheduler"]) == (
        25,
        "euler",
        "simple",
    )


@pytest.mark.parametrize(
    "graph",
    [
        "not json",
        "[]",
        "{}",
        {"1": "x", "2": None},
        {"1": {"class_type": "KSampler", "inputs": "nope"}},
        {
            "1": {
                "class_type": "KSampler",
                "inputs": {"positive": ["2", 0], "seed": ["1", 0], "model": ["2", 0]},
            },
            "2": {
                "class_type": "ConditioningCombine",
                "inputs": {"conditioning_1": ["2", 0], "model": ["2", 0]},
            },
        },
        {"1": {"class_type": "KSampler", "inputs": {"positive": [["x"], 0], "negative": [None, None]}}},
    ],
    ids=["not-json", "list", "empty", "non-dict-nodes", "bad-inputs", "cycles", "bad-links"],
)
def test_comfyui_malformed_graphs_never_raise(graph: Any) -> None:
    info = parse_comfyui(graph)
    assert info is None or info.generator == "comfyui"


def test_invokeai_metadata() -> None:
    metadata = {
        "generation_mode": "txt2img",
        "positive_prompt": "a lighthouse in a storm",
        "negative_prompt": "blurry",
        "seed": 123456,
        "model": {"name": "Juggernaut XL v9", "base": "sdxl", "key": "abc"},
        "steps": 30,
        "cfg_scale": 6.5,
        "scheduler": "dpmpp_2m",
        "loras": [{"model": {"name": "x"}, "weight": 0.5}],
    }
    info = parse_invokeai(json.dumps(metadata))
    assert info == GenerationInfo(
        generator="invokeai",
        prompt="a lighthouse in a storm",
        negative_prompt="blurry",
        seed=123456,
        model="Juggernaut XL v9",
        parameters={"generation_mode": "txt2img", "steps": 30, "cfg_scale": 6.5, "scheduler": "dpmpp_2m"},
    )
    assert parse_invokeai("[1, 2]") is None


# -- through the hook, with real image files -------------------------------------------------------------


def test_sample_png_round_trip(tmp_path: Path) -> None:
    sample = make_sample_images(tmp_path, 1, seed=3)[0]
    result = ingest(sample.path)
    assert result["media_type"] == "image/png"
    assert result["kind"] == Kind.IMAGE
    assert (result["width"], result["height"]) == (256, 256)
    assert result["prompt"] == sample.prompt
    assert result["negative_prompt"] == sample.negative_prompt
    assert result["seed"] == sample.seed
    assert result["model"] == sample.model == "assetry-demo-v1"
    assert result["parameters"] == {
        "steps": 28,
        "sampler": "DPM++ 2M Karras",
        "cfg_scale": 6.5,
        "size": "256x256",
    }
    assert result["extra"] == {"generator": "a1111"}
    # What the hook returns must make a valid draft.
    AssetDraft(
        media_type=result["media_type"],
        width=result["width"],
        provenance=Provenance(prompt=result["prompt"], seed=result["seed"], parameters=result["parameters"]),
        extra=result["extra"],
    )


def test_comfyui_png_keeps_extra_small() -> None:
    workflow = {"nodes": [{"id": i, "widgets_values": ["x" * 1000]} for i in range(200)], "links": []}
    data = png_with_text({"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(workflow)})
    result = ingest(data, name="ComfyUI_00001_.png")
    assert result["prompt"].startswith("beautiful scenery")
    assert result["seed"] == 156680208700286
    assert result["model"] == "sd_xl_base_1.0"
    assert result["extra"] == {"generator": "comfyui", "comfyui_nodes": 8, "comfyui_workflow_nodes": 200}
    assert len(json.dumps(result["extra"])) < 200


def test_invokeai_png() -> None:
    data = png_with_text({"invokeai_metadata": json.dumps({"positive_prompt": "a fox", "seed": 5})})
    result = ingest(data)
    assert (result["prompt"], result["seed"], result["extra"]) == ("a fox", 5, {"generator": "invokeai"})


def _exif_with_comment(comment: bytes) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = comment
    return exif.tobytes()


@pytest.mark.parametrize(
    ("fmt", "encoding"), [("JPEG", "utf-16-be"), ("WEBP", "utf-16-le"), ("JPEG", "ascii")]
)
def test_exif_user_comment_parameters(fmt: str, encoding: str) -> None:
    text = (
        "a lighthouse, stormy sea\nNegative prompt: people\n"
        "Steps: 25, Sampler: Euler a, CFG scale: 5, Seed: 77, Model: dreamshaper_8"
    )
    prefix = b"ASCII\x00\x00\x00" if encoding == "ascii" else b"UNICODE\x00"
    data = image_bytes(fmt, (80, 60), exif=_exif_with_comment(prefix + text.encode(encoding)))
    result = ingest(data, name=f"out.{fmt.lower()}")
    assert (result["width"], result["height"]) == (80, 60)
    assert result["prompt"] == "a lighthouse, stormy sea"
    assert result["negative_prompt"] == "people"
    assert (result["seed"], result["model"]) == (77, "dreamshaper_8")
    assert result["parameters"]["sampler"] == "Euler a"


def test_ordinary_exif_comment_is_not_a_prompt() -> None:
    data = image_bytes("JPEG", exif=_exif_with_comment(b"ASCII\x00\x00\x00Shot on a phone"))
    result = ingest(data)
    assert "prompt" not in result
    assert result["width"] == 37


def test_decode_user_comment_variants() -> None:
    assert decode_user_comment(b"UNICODE\x00" + "h\u00e9".encode("utf-16-be")) == "h\u00e9"
    assert decode_user_comment(b"UNICODE\x00\xff\xfe" + "hi".encode("utf-16-le")) == "hi"
    assert decode_user_comment(b"\x00" * 8 + b"plain") == "plain"
    assert decode_user_comment(b"UNICODE\x00\x00") is None
    assert decode_user_comment(None) is None


def test_generation_extraction_can_be_disabled(tmp_path: Path) -> None:
    sample = make_sample_images(tmp_path, 1)[0]
    result = ingest(sample.path, extract_generation=False)
    assert result["width"] == 256
    assert not {"prompt", "seed", "model", "parameters", "extra"} & result.keys()


def test_caller_fields_are_not_overridden(tmp_path: Path) -> None:
    sample = make_sample_images(tmp_path, 1)[0]
    draft = AssetDraft(
        media_type="image/png",
        width=1,
        height=2,
        provenance=Provenance(prompt="mine", seed=7, parameters={"steps": 99}),
        extra={"generator": "my-pipeline"},
    )
    result = ingest(sample.path, draft=draft)
    assert not {"media_type", "width", "height", "prompt", "seed"} & result.keys()
    assert result["kind"] == Kind.IMAGE
    assert result["negative_prompt"] == sample.negative_prompt
    assert result["model"] == sample.model
    assert "steps" not in result["parameters"]
    assert result["parameters"]["sampler"] == "DPM++ 2M Karras"
    assert "extra" not in result
    assert "kind" not in ingest(sample.path, draft=AssetDraft(kind=Kind.FILE))


def test_caller_media_type_decides_what_is_read() -> None:
    result = ingest(image_bytes("PNG"), draft=AssetDraft(media_type="application/x-thing"))
    assert result == {"kind": Kind.FILE}


# -- broken and hostile files ----------------------------------------------------------------------------


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge 1-bit image, with a little compressed data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 << 20), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: image_bytes("PNG", (300, 300))[:200],
        lambda: png_with_text({"parameters": A1111_FULL})[:-40],
        lambda: b"\x89PNG\r\n\x1a\n" + b"garbage after the signature" * 10,
        lambda: b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00" * 13) + b"\xff" * 50,
        lambda: b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 0x7FFFFFFF) + b"tEXtparameters\x00abc",
        lambda: image_bytes("JPEG")[:30],
        lambda: b"GIF89a" + b"\xff" * 3,
    ],
    ids=[
        "truncated",
        "truncated-after-text",
        "garbage",
        "zero-ihdr",
        "huge-chunk-length",
        "jpeg-cut",
        "gif-cut",
    ],
)
def test_broken_images_never_fail_ingest(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    result = ingest(make(), name="broken.png")
    assert result["media_type"] in ("image/png", "image/jpeg", "image/gif")
    assert result["kind"] == Kind.IMAGE
    for key in ("width", "height"):
        assert key not in result or isinstance(result[key], int)


@pytest.mark.parametrize(
    ("name", "data", "media_type"),
    [
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "image/png"),
        ("broken.gif", b"GIF89a" + b"\xff" * 3, "image/gif"),  # Pillow's message would hold the path
    ],
)
def test_broken_image_warning_names_the_file_not_the_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, data: bytes, media_type: str
) -> None:
    path = tmp_path / "deep" / "dir" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="assetry_media"):
        result = ingest(path)
    assert result == {"media_type": media_type, "kind": Kind.IMAGE}
    assert name in caplog.text
    assert "deep" not in caplog.text


def test_decompression_bomb_is_not_decoded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decoded: list[object] = []
    for cls in (Image.Image, ImageFile.ImageFile):
        original = cls.load

        def spy(self: Any, _original: Any = original) -> Any:
            decoded.append(self)
            return _original(self)

        monkeypatch.setattr(cls, "load", spy)
    data = _bomb_png(100_000, 100_000)  # 10^10 pixels; decoded as 8-bit that is 10 GB
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="assetry_media"):
            result = ingest(data, name="bomb.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == {"media_type": "image/png", "kind": Kind.IMAGE}
    assert decoded == []
    assert peak < 8 * 1024 * 1024
    assert "bomb.png" in caplog.text
    assert "decompression bomb" in caplog.text


def test_max_pixels_option_guards_below_pillows_limit(caplog: pytest.LogCaptureFixture) -> None:
    data = image_bytes("PNG", (200, 200))
    assert ingest(data, max_pixels=40_000)["width"] == 200
    with caplog.at_level(logging.WARNING, logger="assetry_media"):
        result = ingest(data, name="big.png", max_pixels=39_999)
    assert "width" not in result
    assert "big.png" in caplog.text


def test_hostile_text_chunks_are_sanitised() -> None:
    # Lone surrogates can only come from JSON escapes (PNG text itself is Latin-1 or UTF-8).
    text = 'bad\x00prompt\nSteps: 1, Sampler: a\x00b, Seed: 3, Note: "x\\ud800y, z"'
    result = ingest(png_with_text({"parameters": text}))
    assert result["prompt"] == "badprompt"
    assert result["parameters"]["sampler"] == "ab"
    assert result["parameters"]["note"] == "x?y, z"
    draft = AssetDraft(provenance=Provenance(prompt=result["prompt"], parameters=result["parameters"]))
    assert draft.provenance.seed is None


@pytest.mark.parametrize("chunk", ["zTXt", "iTXt"])
def test_png_text_chunk_too_large_to_decompress_keeps_size_and_other_text(
    chunk: str, caplog: pytest.LogCaptureFixture
) -> None:
    # ComfyUI workflows of thousands of nodes pass Pillow's 1 MB limit for one compressed text chunk.
    workflow = json.dumps({"nodes": [{"id": i} for i in range(120_000)]})
    assert len(workflow) > PngImagePlugin.MAX_TEXT_CHUNK
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "ComfyUI")
    if chunk == "zTXt":
        info.add_text("workflow", workflow, zip=True)
    else:
        info.add_itxt("workflow", workflow, zip=True)
    info.add_text("parameters", A1111_FULL)
    data = image_bytes("PNG", (640, 480), pnginfo=info)
    read = images.read_image_info(io.BytesIO(data), max_pixels=10**6)
    assert (read.width, read.height, read.skipped_text) == (640, 480, ("workflow",))
    assert read.text.keys() == {"Software", "parameters"}  # the chunks before and after it are read
    with caplog.at_level(logging.WARNING, logger="assetry_media"):
        result = ingest(data, name="big-workflow.png")
    assert (result["width"], result["height"], result["seed"]) == (640, 480, 3141592653)
    assert "big-workflow.png: skipped PNG text chunks" in caplog.text
    assert "'workflow'" in caplog.text
    assert PngImagePlugin.MAX_TEXT_CHUNK == ImageFile.SAFEBLOCK  # the bomb guard is left as it is


@pytest.mark.parametrize(
    "notes",
    [["n" * 20_000], ["n" * 6_000, "m" * 6_000]],
    ids=["one-chunk-over-the-total", "chunks-adding-up-over-the-total"],
)
def test_png_text_over_pillows_total_for_text_keeps_size_and_the_rest(
    monkeypatch: pytest.MonkeyPatch, notes: list[str]
) -> None:
    # Pillow's total for all text is 64 MB; scaled down so the test need not write that much.
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 10_000)
    info = PngImagePlugin.PngInfo()
    for i, note in enumerate(notes):
        info.add_text(f"note{i}", note)
    info.add_text("parameters", A1111_FULL)
    data = image_bytes("PNG", (64, 48), pnginfo=info)
    read = images.read_image_info(io.BytesIO(data), max_pixels=10**6)
    assert (read.width, read.height) == (64, 48)
    assert read.skipped_text == (f"note{len(notes) - 1}",)
    assert "parameters" in read.text


# -- demo samples and colour embedding -------------------------------------------------------------------


def test_samples_are_deterministic_with_exact_and_near_duplicates(tmp_path: Path) -> None:
    first = make_sample_images(tmp_path / "a", 12, seed=1)
    again = make_sample_images(tmp_path / "b", 12, seed=1)
    other = make_sample_images(tmp_path / "c", 12, seed=2)
    assert len(first) == 12
    assert [s.path.read_bytes() for s in first] == [s.path.read_bytes() for s in again]
    assert [attrs_without_path(s) for s in first] == [attrs_without_path(s) for s in again]
    assert first[0].path.read_bytes() != other[0].path.read_bytes()

    contents = [s.path.read_bytes() for s in first]
    assert contents[-2] == contents[1]
    assert contents[-1] == contents[2]
    assert len(set(contents)) == 10
    near = first[-3]
    assert contents[-3] != contents[0]
    assert (near.prompt, near.seed, near.theme) == (first[0].prompt, first[0].seed, first[0].theme)
    assert cosine(color_embedding(contents[-3]), color_embedding(contents[0])) > 0.98

    assert len({s.path for s in first}) == 12
    assert len({s.theme for s in first}) >= 6
    for sample in first:
        with Image.open(sample.path) as image:
            assert (image.format, image.size) == ("PNG", (256, 256))
            info = parse_a1111(image.info["parameters"])
        assert info is not None
        assert (info.prompt, info.seed, info.model) == (sample.prompt, sample.seed, sample.model)
        theme = next(t for t in THEMES if t.name == sample.theme)
        assert sample.prompt.startswith(theme.prompt)
        AssetDraft(tags=sample.tags)


def attrs_without_path(sample: Any) -> tuple[Any, ...]:
    return (sample.prompt, sample.negative_prompt, sample.seed, sample.model, sample.theme, sample.tags)


@pytest.mark.parametrize("count", [0, 1, 5])
def test_few_samples_have_no_duplicates(tmp_path: Path, count: int) -> None:
    samples = make_sample_images(tmp_path, count)
    assert len(samples) == count
    assert len({s.path.read_bytes() for s in samples}) == count


def test_color_embedding_shape_and_inputs(tmp_path: Path) -> None:
    sample = make_sample_images(tmp_path, 1)[0]
    vector = color_embedding(sample.path.read_bytes())
    assert len(vector) == COLOR_EMBEDDING_DIM == 64
    assert math.isclose(sum(x * x for x in vector), 1.0)
    assert all(x >= 0 for x in vector)
    with open(sample.path, "rb") as f:
        assert color_embedding(f) == vector
    solid = color_embedding(image_bytes("JPEG"))
    assert sorted(solid)[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("mode", "fmt", "halves", "grey_halves"),
    [
        ("I;16", "PNG", (16384, 49152), (64, 192)),
        ("I;16B", "TIFF", (8192, 32768), (32, 128)),
        ("I", "TIFF", (16384, 65535), (64, 255)),
        ("F", "TIFF", (0.2, 0.5), (51, 128)),
    ],
    ids=["16-bit-png", "16-bit-tiff", "32-bit-int-tiff", "float-tiff"],
)
def test_color_embedding_scales_wide_greyscale_to_8_bits(
    mode: str, fmt: str, halves: tuple[float, float], grey_halves: tuple[int, int]
) -> None:
    def two_tone(mode: str, fmt: str, values: tuple[float, float]) -> bytes:
        image = Image.new(mode, (32, 16))
        for i, value in enumerate(values):  # pasting a bare value into "I;16B" writes 0
            image.paste(Image.new(mode, (16, 16), value), (16 * i, 0))
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        return buffer.getvalue()

    # The same picture at 8 bits falls in the same bins (not all of it in the white one).
    assert color_embedding(two_tone(mode, fmt, halves)) == color_embedding(two_tone("L", "PNG", grey_halves))


def test_color_embedding_same_theme_is_closer_than_other_themes(tmp_path: Path) -> None:
    samples = make_sample_images(tmp_path, 12, seed=0)[:9]  # originals only
    vectors = [color_embedding(s.path.read_bytes()) for s in samples]
    pairs = [
        (i, j)
        for i in range(len(samples))
        for j in range(i + 1, len(samples))
        if samples[i].theme == samples[j].theme
    ]
    assert pairs, "the sample set should repeat a theme"
    for i, j in pairs:
        same = cosine(vectors[i], vectors[j])
        for k, other in enumerate(samples):
            if other.theme != samples[i].theme:
                assert same > cosine(vectors[i], vectors[k]), (samples[i].theme, other.theme)


# -- properties ------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(st.text(alphabet=st.sampled_from('ab :,"\\\n-Steps Seed Negative prompt:0123456789.'), max_size=300))
def test_a1111_parser_total(text: str) -> None:
    info = parse_a1111(text)
    if info is not None:
        json.dumps(info.parameters, allow_nan=False)
        assert info.seed is None or -(2**63) <= info.seed < 2**63


@given(st.dictionaries(st.sampled_from(["1", "2", "3"]), json_values, max_size=3))
def test_comfyui_parser_total(graph: dict[str, Any]) -> None:
    for node in graph.values():
        if isinstance(node, dict):
            node.setdefault("class_type", "KSampler")
    info = parse_comfyui(graph)
    if info is not None:
        json.dumps(info.parameters, allow_nan=False)

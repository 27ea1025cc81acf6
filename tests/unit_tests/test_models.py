from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from oscar_langchain.errors import ConfigurationError, UnknownModelError
from oscar_langchain.models import ModelInfo, ModelRegistry, default_registry, estimate_cost


def test_bundled_registry() -> None:
    reg = ModelRegistry.default()
    info = reg.get("gpt-4o")
    assert info.context_window == 128000
    assert info.encoding == "o200k_base"
    assert "tools" in info.capabilities
    assert reg.get("gpt-4o-2024-08-06") is info
    assert "gpt-4o" in reg and "nope" not in reg
    assert "gemma-3-270m" in reg.names()


def test_estimate_cost() -> None:
    assert estimate_cost("gpt-4o", 1000, 500) == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    assert estimate_cost("gemma-3-270m", 10_000, 10_000) == 0.0
    with pytest.raises(UnknownModelError):
        estimate_cost("mystery", 1, 1)
    fallback = ModelInfo("fallback", input_price=1.0, output_price=2.0)
    assert estimate_cost("mystery", 1_000_000, 0, default=fallback) == pytest.approx(1.0)
    with pytest.raises(ConfigurationError, match="input_tokens"):
        estimate_cost("gpt-4o", -1, 0)
    with pytest.raises(ConfigurationError, match="output_tokens"):
        estimate_cost("gpt-4o", 1, 2.5)  # type: ignore[arg-type]


def test_register_override_and_aliases() -> None:
    reg = ModelRegistry([ModelInfo("m", aliases=("m-v1",), input_price=1.0)])
    assert reg.get("m-v1").input_price == 1.0
    reg.register(ModelInfo("m", aliases=("m-v2",), input_price=2.0))
    assert reg.get("m").input_price == 2.0
    assert "m-v1" not in reg
    with pytest.raises(ConfigurationError, match="already registered"):
        reg.register(ModelInfo("m"), override=False)
    with pytest.raises(ConfigurationError, match="info"):
        reg.register({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="model"):
        reg.get(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "context_window": -1}, "context_window"),
        ({"name": "x", "max_output_tokens": 1.5}, "max_output_tokens"),
        ({"name": "x", "input_price": -0.1}, "input_price"),
        ({"name": "x", "output_price": True}, "output_price"),
        ({"name": "x", "quality": 1.5}, "quality"),
    ],
)
def test_model_info_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        ModelInfo(**kwargs)  # type: ignore[arg-type]


def test_load_json_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "extra.json"
    path.write_text(json.dumps({"models": [{"name": "in-house", "context_window": 4096}]}))
    monkeypatch.setenv("OSCAR_MODEL_REGISTRY", str(path))
    reg = ModelRegistry.default()
    assert reg.get("in-house").context_window == 4096
    assert reg.get("gpt-4o").context_window == 128000
    bad = tmp_path / "bad.json"
    for text, match in [
        ("{not json", "cannot read"),
        ("[1, 2]", "JSON object"),
        ('{"models": {}}', "list"),
        ('{"models": [3]}', "not an object"),
        ('{"models": [{"name": "a", "colour": "red"}]}', "unknown keys"),
        ('{"models": [{"context_window": 3}]}', "missing"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigurationError, match=match):
            ModelRegistry().load_json(bad)


def test_default_registry_is_shared_and_thread_safe() -> None:
    seen: list[ModelRegistry] = []
    threads = [threading.Thread(target=lambda: seen.append(default_registry())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is seen[0] for r in seen)


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"capabilities": "tools"}, "capabilities"),  # not {'t', 'o', 'l', 's'}
        ({"aliases": "my-llm-v1"}, "aliases"),  # not one-letter aliases
        ({"capabilities": ["tools", 3]}, "capabilities"),
        ({"aliases": ["v1", "v1"]}, "aliases"),
        ({"aliases": ["my-llm"]}, "aliases"),
        ({"encoding": "o200k"}, "encoding"),  # would fail only when counting tokens
        ({"encoding_exact": "no"}, "encoding_exact"),
        ({"provider": None}, "provider"),
    ],
)
def test_malformed_entries_are_rejected_by_field(entry: dict[str, object], field: str) -> None:
    reg = ModelRegistry()
    with pytest.raises(ConfigurationError, match=f"^{field}: "):
        reg.load_mapping({"models": [{"name": "my-llm", **entry}]})
    assert "my-llm" not in reg


def test_known_encodings_are_those_tokens_ships() -> None:
    from oscar_langchain.models import ENCODING_NAMES
    from oscar_langchain.tokens import ENCODINGS

    assert set(ENCODINGS) == ENCODING_NAMES


def test_names_and_aliases_never_shadow_another_model() -> None:
    reg = ModelRegistry([ModelInfo("b-model", input_price=1.0), ModelInfo("c", aliases=("c1",))])
    with pytest.raises(ConfigurationError, match=r"'b-model' .* is the name of model 'b-model'"):
        reg.register(ModelInfo("a-model", aliases=("b-model",)))
    with pytest.raises(ConfigurationError, match=r"^aliases: .* is an alias of model 'c'"):
        reg.register(ModelInfo("a-model", aliases=("c1",)))
    with pytest.raises(ConfigurationError, match=r"^name: 'c1' .* is an alias of model 'c'"):
        reg.register(ModelInfo("c1"))
    reg.register(ModelInfo("a-model"))
    reg.register(ModelInfo("a-model", aliases=("a1",)))  # re-registering frees its own keys
    assert reg.get("b-model").input_price == 1.0 and reg.names() == ["a-model", "b-model", "c"]
    reg.register(ModelInfo("c", aliases=("c2",)))  # c1 is free once c drops it
    reg.register(ModelInfo("c1"))
    assert reg.get("c1").name == "c1" and reg.get("c2").name == "c"

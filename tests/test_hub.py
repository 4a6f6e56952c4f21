"""A saved folder is Hub-ready: a fresh process loads it offline through every Hub interface."""

from __future__ import annotations

import ast
import json
import sys
import textwrap

import numpy as np
import pytest
from conftest import TEXTS, run_isolated

from causal2vec import REPO_ROOT
from causal2vec.assemble import build_random

REMOTE_CODE = (
    "configuration_causal2vec",
    "modeling_causal2vec",
    "tokenization_causal2vec",
    "hub_causal2vec",
    "handler",
)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer, pipeline
    from sentence_transformers import SentenceTransformer

    path, texts = sys.argv[1], json.loads(sys.argv[2])
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    extractor = pipeline("feature-extraction", model=path, trust_remote_code=True)
    st = SentenceTransformer(path, trust_remote_code=True)
    local = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling_causal2vec", "train"))
    out = {
        "classes": [type(config).__name__, type(model).__name__, type(tokenizer).__name__],
        "modules": [type(model).__module__, type(tokenizer).__module__],
        "local_imports": local,
        "encode": model.encode(texts).tolist(),
        "query": model.encode(texts, prompt_name="query").tolist(),
        "document": model.encode(texts, prompt_name="document").tolist(),
        "pipeline": [extractor(t)[0] for t in texts],
        "st": st.encode(texts).tolist(),
        "st_query": st.encode(texts, prompt_name="query").tolist(),
        "st_document": st.encode(texts, prompt_name="document").tolist(),
        "st_dim": st.get_sentence_embedding_dimension(),
    }
    print(json.dumps(out))
    """
)


def test_fresh_process_loads_offline_through_hub_interfaces(tmp_path):
    tiny = build_random(document_prompt="Passage: ")
    folder = tmp_path / "model"
    tiny.save_pretrained(folder)
    expected = tiny.encode(TEXTS)
    expected_query = tiny.encode(TEXTS, prompt_name="query")
    expected_document = tiny.encode(TEXTS, prompt_name="document")
    assert np.abs(expected_document - expected).max() > 1e-4
    out = run_isolated(SCRIPT, folder, tmp_path)
    assert out["classes"] == ["Causal2VecConfig", "Causal2VecModel", "Causal2VecTokenizer"]
    assert all(m.startswith("transformers_modules.") for m in out["modules"]), "loaded as remote code"
    assert out["local_imports"] == [], "the project's source tree was not importable"
    np.testing.assert_allclose(out["encode"], expected, atol=1e-5)
    np.testing.assert_allclose(out["query"], expected_query, atol=1e-5)
    np.testing.assert_allclose(out["pipeline"], expected, atol=1e-5)
    np.testing.assert_allclose(out["st"], expected, atol=1e-5)
    np.testing.assert_allclose(out["st_query"], expected_query, atol=1e-5)
    np.testing.assert_allclose(out["document"], expected_document, atol=1e-5)
    np.testing.assert_allclose(out["st_document"], expected_document, atol=1e-5)
    assert out["st_dim"] == tiny.config.embedding_dim


def test_saved_folder_contents(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "modeling_causal2vec.py",
        "configuration_causal2vec.py",
        "tokenization_causal2vec.py",
        "handler.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "encoder_tokenizer",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    } <= names
    assert {p.stem for p in tmp_path.glob("*.py")} == set(REMOTE_CODE), "every sibling file ships (and no other)"
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names), "no pickles"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_causal2vec.Causal2VecConfig",
        "AutoModel": "modeling_causal2vec.Causal2VecModel",
    }
    tok_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tok_config["auto_map"]["AutoTokenizer"][0] == "tokenization_causal2vec.Causal2VecTokenizer"
    st = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert st["prompts"]["query"] == tiny.config.query_prompt()
    assert st["requirements"] == {"sentence_transformers": ">=5.4.0"}
    card = (tmp_path / "README.md").read_text()
    front = card.split("---")[1]
    for line in ("library_name: transformers", "pipeline_tag: feature-extraction", "license: apache-2.0", "widget:"):
        assert line in front
    assert "- causal2vec" in front and "- custom_code" in front
    assert f"({tiny.config.embedding_dim} dimensions" in card
    assert "Inference Endpoint" in card and "`handler.py`" in card, "the card says how the widget gets a backend"
    half = tiny.config.embedding_dim // 2
    assert "`truncate_dim=k`" in card and f"the first {half} are the Contextual token's state" in card


def test_sentence_transformers_truncate_dim_gives_the_first_dimensions(tiny, tmp_path, one_thread):
    """`SentenceTransformer(export, truncate_dim=k)` keeps encode's first k dimensions (normalised after cutting)."""
    from sentence_transformers import SentenceTransformer

    tiny.save_pretrained(tmp_path)
    half = tiny.config.embedding_dim // 2
    st = SentenceTransformer(str(tmp_path), trust_remote_code=True, device="cpu", truncate_dim=half)  # CPU encode()
    full = tiny.encode(TEXTS)
    assert st.get_embedding_dimension() == half
    np.testing.assert_allclose(st.encode(TEXTS), full[:, :half], atol=1e-5)
    prefix = full[:, :half] / np.linalg.norm(full[:, :half], axis=1, keepdims=True)
    np.testing.assert_allclose(st.encode(TEXTS, normalize_embeddings=True), prefix, atol=1e-5)
    np.testing.assert_allclose(st.encode(TEXTS, truncate_dim=1), full[:, :1], atol=1e-5)


HANDLER_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys

    path, texts = sys.argv[1], json.loads(sys.argv[2])
    spec = importlib.util.spec_from_file_location("handler", f"{path}/handler.py")  # as Inference Endpoints do
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(path)
    out = {
        "plain": handler({"inputs": texts}),
        "single": handler({"inputs": texts[0], "parameters": {}}),
        "query": handler({"inputs": texts, "parameters": {"prompt_name": "query", "normalize_embeddings": True}}),
        "errors": [],
    }
    for bad in (
        {"text": texts},
        {"inputs": [texts[0], 3]},
        {"inputs": texts, "parameters": {"dimensions": 8}},
        {"inputs": texts, "parameters": {"batch_size": "2"}},
        {"inputs": texts, "parameters": {"prompt_name": "passage"}},
    ):
        try:
            handler(bad)
            out["errors"].append(None)
        except (TypeError, ValueError) as err:
            out["errors"].append(str(err))
    print(json.dumps(out))
    """
)


def test_endpoint_handler_in_a_fresh_process(tiny, tmp_path):
    folder = tmp_path / "model"
    tiny.save_pretrained(folder)
    out = run_isolated(HANDLER_SCRIPT, folder, tmp_path)
    np.testing.assert_allclose(out["plain"], tiny.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(out["single"], tiny.encode(TEXTS[:1]), atol=1e-5)
    query = tiny.encode(TEXTS, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(out["query"], query, atol=1e-5)
    assert len(out["plain"]) == len(TEXTS) and len(out["plain"][0]) == tiny.config.embedding_dim
    expected = ['expected {"inputs"', "text 1 is int", "unknown parameter 'dimensions'", "batch_size must be int"]
    for error, message in zip(out["errors"], [*expected, "unknown prompt_name 'passage'"], strict=True):
        assert error is not None and message in error, (error, message)


def test_save_pretrained_keeps_a_card_someone_wrote(tiny, tmp_path):
    (tmp_path / "README.md").write_text("# my notes\n")
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "# my notes\n"


def _imports(path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file; relative imports as ".name"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_imports_only_what_a_hub_user_has(name):
    """Remote code may import torch, transformers, safetensors, the standard library and its sibling files."""
    allowed = {"torch", "transformers", "safetensors", *sys.stdlib_module_names, *REMOTE_CODE}
    path = REPO_ROOT / f"{name}.py"
    bad = [(line, module) for line, module in _imports(path) if module.lstrip(".").split(".")[0] not in allowed]
    assert not bad, f"{path.name} imports {bad}"
    relative = [module for _, module in _imports(path) if module.startswith(".")]
    assert all(module.lstrip(".") in REMOTE_CODE for module in relative), relative


def test_card_metadata_round_trips_through_model_card(tiny, tmp_path):
    """The card's facts are data: huggingface_hub parses the front matter that the stdlib writer emits."""
    from huggingface_hub import ModelCard

    from causal2vec.card import write_model_card
    from hub_causal2vec import METADATA_KEY

    training = {
        "steps": 6,
        "lr_encoder": 2e-05,
        "wall_time_s": 1234.5,
        "final_loss": float("nan"),
        "baseline": None,
        "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
        "document_prompt": "Passage: ",
        "note": 'quotes " and colons: yes, # hash, unicode é, true',
    }
    data_files = {"snli.jsonl": 40, "qa (datasets folder)": 10}
    bases = ["HuggingFaceTB/SmolLM2-135M-Instruct", "random bert"]
    write_model_card(tmp_path, tiny.config, bases, training=training, data_files=data_files, loss_curve="loss.png")
    data = ModelCard.load(tmp_path / "README.md").data
    meta = data.get(METADATA_KEY)
    assert meta["base_models"] == bases and meta["data_files"] == data_files and meta["loss_curve"] == "loss.png"
    got = meta["training"]
    assert got.pop("final_loss") != got.get("final_loss")  # NaN comes back as NaN
    assert got == {k: v for k, v in training.items() if k != "final_loss"}
    assert isinstance(got["lr_encoder"], float), "YAML 1.1 reads 2e-05 as a string; the writer writes 2.0e-05"
    assert data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"], "only Hub ids are Hub base models"
    assert data.library_name == "transformers" and "custom_code" in data.tags and data.language == ["en"]


def test_a_gemma_decoder_makes_a_gemma_licensed_card(tmp_path):
    """Gemma's weights come with their own terms: a card on a Gemma-family decoder says so, by folder path too."""
    from conftest import DECODER_FAMILIES
    from huggingface_hub import ModelCard

    from causal2vec.card import write_model_card

    for family, licence in (("gemma3_text", "gemma"), ("gemma2", "gemma"), ("qwen2", "apache-2.0")):
        model = build_random(DECODER_FAMILIES[family])
        folder = tmp_path / family
        folder.mkdir()
        write_model_card(folder, model.config, ["/models/some-folder", "sentence-transformers/all-MiniLM-L6-v2"])
        card = ModelCard.load(folder / "README.md")
        assert card.data.license == licence, family
        notice = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"
        if licence == "gemma":  # the terms ask for this notice in a NOTICE file with every copy; the card repeats it
            assert (folder / "NOTICE").read_text() == notice + "\n" and notice in card.text
        else:
            assert not (folder / "NOTICE").exists() and "Gemma" not in card.text
    # a NOTICE the user wrote is kept, the notice added after it, once however often the card is written
    folder = tmp_path / "own-notice"
    folder.mkdir()
    (folder / "NOTICE").write_text("Copyright 2026 me")
    model = build_random(DECODER_FAMILIES["gemma3_text"])
    for _ in range(2):
        write_model_card(folder, model.config, ["/models/some-folder"])
    assert (folder / "NOTICE").read_text() == f"Copyright 2026 me\n{notice}\n"
    assert "Model Derivative of Gemma" in ModelCard.load(folder / "README.md").text


def test_reuse_keeps_a_gemma_folder_whatever_its_notice(tmp_path):
    """`train init --reuse` compares what it would write with the folder, except the card and the NOTICE: a folder
    made before the NOTICE existed, or one whose NOTICE the user extended, is the same checkpoint."""
    from conftest import DECODER_FAMILIES

    from causal2vec.assemble import checkpoint_differences, write_checkpoint

    model = build_random(DECODER_FAMILIES["gemma3_text"])
    folder = tmp_path / "gemma"
    write_checkpoint(folder, model, ["google/gemma-3-270m"])
    assert (folder / "NOTICE").is_file() and checkpoint_differences(folder, model, ["google/gemma-3-270m"]) == []
    (folder / "NOTICE").write_text("Copyright 2026 me\n")
    assert checkpoint_differences(folder, model, ["google/gemma-3-270m"]) == []
    (folder / "NOTICE").unlink()
    assert checkpoint_differences(folder, model, ["google/gemma-3-270m"]) == []
    (folder / "tokenizer.json").write_text("{}")  # any other file still counts
    assert checkpoint_differences(folder, model, ["google/gemma-3-270m"]) == ["tokenizer.json differs"]

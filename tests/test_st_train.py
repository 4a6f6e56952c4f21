"""sentence-transformers' trainer fine-tunes an exported checkpoint; the result saves and reloads exactly."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from conftest import TEXTS, run_isolated

RELOAD = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoModel
    from sentence_transformers import SentenceTransformer

    path, texts = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    st = SentenceTransformer(path, trust_remote_code=True)
    print(json.dumps({"auto": model.encode(texts).tolist(), "st": st.encode(texts).tolist(),
                      "st_query": st.encode(texts, prompt_name="query").tolist()}))
    """
)


@pytest.mark.parametrize("loss_name", ["MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"])
def test_sentence_transformers_trainer_fine_tunes_an_export(tiny, tmp_path, one_thread, loss_name):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    from sentence_transformers.sentence_transformer import losses

    export = tmp_path / "export"
    tiny.save_pretrained(export)
    before = tiny.encode(TEXTS)
    st = SentenceTransformer(str(export), trust_remote_code=True, device="cpu")  # compared with CPU encode()
    np.testing.assert_allclose(st.encode(TEXTS), before, atol=1e-5)
    data = Dataset.from_dict(
        {
            "anchor": ["a cat sleeps", "stocks fell", "guitar on stage", "plants and light", "rain today"],
            "positive": ["the kitten naps", "markets dropped", "a man plays music", "photosynthesis", "wet weather"],
            "negative": ["a car drives", "markets rose", "a quiet room", "a rock", "sunny skies"],
        }
    )
    loss_kwargs = {"mini_batch_size": 2} if loss_name.startswith("Cached") else {}
    loss = getattr(losses, loss_name)(st, **loss_kwargs)
    args = Args(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
        prompts={"anchor": st.prompts["query"]},  # reaches the decoder only: the tokenizer splits it off
    )
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=data, loss=loss)
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    trained = st.encode(TEXTS)
    assert np.abs(trained - before).max() > 1e-3, "training changed nothing"
    saved = tmp_path / "trained"
    st.save_pretrained(str(saved))
    assert (saved / "handler.py").is_file() and (saved / "encoder_tokenizer").is_dir()
    out = run_isolated(RELOAD, saved, tmp_path)
    np.testing.assert_allclose(out["auto"], trained, atol=1e-5)
    np.testing.assert_allclose(out["st"], trained, atol=1e-5)
    np.testing.assert_allclose(out["st_query"], st.encode(TEXTS, prompt_name="query"), atol=1e-5)


def test_short_encoder_keys_name_the_same_inputs(tiny):
    """What the exported sentence_bert_config.json asks the tokenizer for: no `*_input_ids` key but the decoder's."""
    plain = tiny.tokenizer(TEXTS, return_tensors="pt")
    short = tiny.tokenizer(TEXTS, return_tensors="pt", short_encoder_keys=True)
    assert [k for k in short if k.endswith("input_ids")] == ["input_ids"]
    assert torch.equal(short["encoder_ids"], plain["encoder_input_ids"])
    assert torch.equal(short["encoder_mask"], plain["encoder_attention_mask"])
    tiny.eval()
    with torch.inference_mode():
        torch.testing.assert_close(tiny(**short).sentence_embedding, tiny(**plain).sentence_embedding)
        with pytest.raises(ValueError, match="encoder_input_ids/_attention_mask or encoder_ids/_mask"):
            tiny(**plain, encoder_ids=short["encoder_ids"])
    assert set(tiny.tokenizer([], short_encoder_keys=True)) == set(short)

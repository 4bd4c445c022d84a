"""SFT data and masking: only the assistant's replies (or completions) carry loss; packed examples
never attend to each other; bad chat records are clear errors naming file:line and field."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from genforge.data.tokenizer import EOT, train_tokenizer
from genforge.errors import DataError
from genforge.finetune.sft_data import IGNORE, pack, read_examples
from genforge.finetune.template import DEFAULT_TEMPLATE, render, segments
from genforge.models.gpt import GPT, GPTConfig
from genforge.objectives.sft import SFTObjective

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye?"},
            {"role": "assistant", "content": "Bye."}]
TOK = train_tokenizer("char", ["Be brief.\n\nUser: Hi?\nAssistant: Hello. Bye? Bye. quick brown fox:ASU"])


def test_segments_mark_only_replies():
    pieces = segments(DEFAULT_TEMPLATE, MESSAGES)
    assert "".join(t for t, _ in pieces) == render(DEFAULT_TEMPLATE, MESSAGES)
    assert [t for t, trained in pieces if trained] == [" Hello." + EOT, " Bye." + EOT]
    assert render(DEFAULT_TEMPLATE, MESSAGES[:2], add_generation_prompt=True).endswith("User: Hi?\nAssistant:")


def test_hf_style_template_with_special_tokens():
    chatml = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    pieces = segments(chatml, MESSAGES, eos="<|im_end|>")
    assert [t for t, trained in pieces if trained] == ["Hello.<|im_end|>\n", "Bye.<|im_end|>\n"]


def write(tmp_path, rows) -> object:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_prompt_tokens_carry_no_loss(tmp_path):
    path = write(tmp_path, [{"messages": MESSAGES}, {"prompt": "quick ", "completion": "brown fox"}])
    examples = read_examples(path, TOK, DEFAULT_TEMPLATE, EOT)
    (ids, flags), (ids2, flags2) = examples
    assert TOK.decode(t for t, f in zip(ids2, flags2) if f) == "brown fox" + EOT
    assert TOK.decode(t for t, f in zip(ids, flags) if f) == " Hello." + EOT + " Bye." + EOT
    X, Y, D, cut = pack(examples, block_size=96, pack=True)
    assert cut == 0 and len(X) == 1
    trained = Y[Y != IGNORE]
    assert TOK.decode(trained.tolist()) == " Hello." + EOT + " Bye." + EOT + "brown fox" + EOT
    # the loss is the mean over reply tokens only: prompt logits can be anything
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16))
    x, y, d = (torch.from_numpy(a) for a in (X, Y, D))
    loss, metrics = SFTObjective(model).loss((x, y, d))
    logits, _ = model(x, doc_ids=d)
    keep = y != IGNORE
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], y[keep]))
    assert metrics["tokens"] == int(keep.sum())
    logits.retain_grad()
    loss2 = F.cross_entropy(  # the gradient reaches no prompt position
       logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    loss2.backward()
    assert logits.grad[~keep].abs().max() == 0 and logits.grad[keep].abs().max() > 0


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_packed_examples_do_not_attend_to_each_other(flavour):
    torch.manual_seed(0)
    model = GPT(GPTConfig(flavour=flavour, vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    a, b = torch.randint(0, 30, (1, 10)), torch.randint(0, 30, (1, 14))
    row = torch.cat([a, b], dim=1)
    doc = torch.tensor([[0] * 10 + [1] * 14])
    with torch.no_grad():
        packed = model(row, doc_ids=doc)[0]
        torch.testing.assert_close(packed[:, :10], model(a)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(packed[:, 10:], model(b)[0], atol=1e-5, rtol=1e-5)  # as if alone, from position 0
        other = torch.cat([torch.randint(0, 30, (1, 10)), b], dim=1)
        torch.testing.assert_close(model(other, doc_ids=doc)[0][:, 10:], packed[:, 10:], atol=1e-6, rtol=1e-6)


def test_pack_and_no_pack_rows():
    examples = [([1, 2, 3, 4], [False, False, True, True]), ([5, 6, 7], [False, True, True]), ([8] * 40, [True] * 40)]
    X, Y, D, cut = pack(examples, block_size=8, pack=True)
    assert cut == 1 and X.shape == (2, 8)
    assert D[0].tolist() == [0, 0, 0, 1, 1, -1, -1, -1] and Y[0].tolist() == [IGNORE, 3, 4, 6, 7] + [IGNORE] * 3
    X, Y, D, _ = pack(examples, block_size=8, pack=False)
    assert X.shape == (3, 8) and D[1].tolist() == [0, 0] + [-1] * 6


@pytest.mark.parametrize("record,match", [
    ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}, r"chat.jsonl:2: messages\[0\].role='robot'"),
    ({"messages": [{"role": "user", "content": "x"}]}, r"chat.jsonl:2: no assistant message"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, r"chat.jsonl:2: messages\[0\] needs a string \"content\""),
    ({"prompt": "x", "completion": 3}, r"chat.jsonl:2: \"completion\" must be a string"),
    ({"text": "x"}, r"chat.jsonl:2: expected \"messages\" or \"prompt\""),
    ("{not json", r"chat.jsonl:2: not valid JSON"),
])
def test_bad_chat_records(tmp_path, record, match):
    path = write(tmp_path, [{"prompt": "quick ", "completion": "fox"}, record])
    with pytest.raises(DataError, match=match):
        read_examples(path, TOK, DEFAULT_TEMPLATE, EOT)


ZEPHYR = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")


@pytest.mark.parametrize("template,eos,bos", [(DEFAULT_TEMPLATE, EOT, ""), (ZEPHYR, "</s>", "<s>")], ids=["genforge", "zephyr"])
def test_stored_template_renders_as_in_transformers(tmp_path, template, eos, bos):
    """The template saved with the tokenizer renders in transformers' apply_chat_template exactly as here."""
    transformers = pytest.importorskip("transformers")
    from genforge.finetune.template import load_bos, load_template, save_template

    TOK.save(tmp_path / "tokenizer.json")
    save_template(tmp_path, template, eos)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "bos_token": bos or None}))
    assert load_template(tmp_path) == (template, eos) and load_bos(tmp_path) == bos
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for gen in (False, True):
        messages = MESSAGES[:-1] if gen else MESSAGES
        ours = render(template, messages, add_generation_prompt=gen, eos=eos, bos=bos)
        assert hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen) == ours
    pieces = segments(template, MESSAGES, eos=eos, bos=bos)
    assert pieces[0][0].startswith(bos) and not pieces[0][1]

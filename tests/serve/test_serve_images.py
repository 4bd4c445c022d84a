"""/v1/images/generations' `size` through the official openai client: a model makes its own size
only, so the size it has (or "auto", or none) is served and any other is a 400 naming it."""
from __future__ import annotations

import base64
import io

import openai
import pytest

from genforge.models.vae import VAE, VAEConfig
from genforge.serve.registry import Served
from serve.test_serve_openai import Pixels, client


def _size(b64: str) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).size  # (width, height)


def test_size_is_honoured_or_refused_naming_the_sizes_the_model_has(make_server):
    vae = VAE(VAEConfig(image_size=16, channels=1, latent_dim=3, hidden=16, width=4)).eval()
    url = make_server(extra=[Served("pixels", "image", Pixels()), Served("vae", "image", vae)])
    c = client(url)
    for size in (None, "auto", "16x16"):
        kw = {} if size is None else {"size": size}
        result = c.images.generate(model="vae", prompt="a digit", n=2, response_format="b64_json", **kw)
        assert [_size(d.b64_json) for d in result.data] == [(16, 16), (16, 16)]
    # width x height, as OpenAI's API writes sizes: Pixels makes 8 rows of 6 columns
    assert _size(c.images.generate(model="pixels", prompt="x", size="6x8").data[0].b64_json) == (6, 8)
    with pytest.raises(openai.BadRequestError) as e:  # no prompt to rank candidates against
        c.images.generate(model="pixels", prompt="x", extra_body={"rerank": 4})
    assert e.value.body["param"] == "rerank" and "only text-to-image models" in e.value.body["message"]
    for model, size, own in (("vae", "256x256", "16x16"), ("vae", "1024x1024", "16x16"), ("pixels", "8x6", "6x8")):
        with pytest.raises(openai.BadRequestError) as e:
            c.images.generate(model=model, prompt="x", size=size)
        error = e.value.body
        assert error["param"] == "size" and error["code"] == "invalid_size"
        assert size in error["message"] and f"the sizes it has: {own}" in error["message"]


def test_a_refused_size_samples_nothing(make_server):
    calls = []

    class Counting(Pixels):
        def sample(self, n, cond=None, generator=None):
            calls.append(n)
            return super().sample(n, cond, generator)

    url = make_server(extra=[Served("pixels", "image", Counting())])
    with pytest.raises(openai.BadRequestError):
        client(url).images.generate(model="pixels", prompt="x", n=4, size="256x256")
    assert 4 not in calls  # at most the one image that tells its size, never the request's four

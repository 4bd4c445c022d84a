"""FID/KID through torchmetrics with a user feature module, precision/recall, class coverage."""
import pytest
import torch
from torch import nn

from genforge.data.image_batches import ImageDataConfig, open_images, to_float
from genforge.errors import ConfigError
from genforge.eval import image_metrics as im


@pytest.fixture(scope="module")
def digits():
    train, _ = open_images(ImageDataConfig(source="builtin:digits"))
    return to_float(train.images[:600])  # (600, 1, 8, 8)


def extractor() -> nn.Module:
    """Any user module mapping images in [0, 1] to (B, D) features works."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())


def noisy(x, sigma):
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise(digits):
    f = extractor()
    a, b = digits[:300], digits[300:]
    assert abs(im.fid(a, a, f)) < 1e-3
    same_dist = im.fid(a, b, f)
    small, large = im.fid(a, noisy(b, 0.2), f), im.fid(a, noisy(b, 0.5), f)
    assert same_dist < small < large


def test_kid_and_precision_recall(digits):
    f = extractor()
    a, b = digits[:300], digits[300:]
    kid_self, _ = im.kid(a, a, f)
    kid_noise, _ = im.kid(a, noisy(b, 0.5), f)
    assert abs(kid_self) < 1e-3 < kid_noise
    fa = im.features(f, a)
    assert im.precision_recall(fa, fa) == (1.0, 1.0)
    p, r = im.precision_recall(fa, im.features(f, noisy(b, 0.5)))
    assert p < 0.5  # noisy fakes leave the real manifold
    collapsed = im.features(f, a[:1].repeat(300, 1, 1, 1))  # every fake is the same real image
    p, r = im.precision_recall(fa, collapsed)
    assert p == 1.0 and r < 0.1  # realistic but no variety: recall catches it


class Oracle(nn.Module):
    """A 'classifier' that reads the class off pixel (0, 0): class = round(9 * pixel)."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"num_classes": 10})()

    def forward(self, x):
        return nn.functional.one_hot((x[:, 0, 0, 0] * 9).round().long(), 10).float()


def test_class_coverage_and_mode_collapse_warning(digits):
    fake = torch.zeros(100, 1, 8, 8)
    fake[:, 0, 0, 0] = (torch.arange(100) % 3) / 9  # only classes 0, 1, 2
    covered, missing, counts = im.class_coverage(Oracle(), fake, 10)
    assert covered == 3 and missing == [3, 4, 5, 6, 7, 8, 9] and counts[:3].tolist() == [34, 33, 33]
    report = im.sample_report(fake, digits[:100], None)
    assert report["diversity"] < 0.5 and "possible mode collapse" in report["warnings"][0]
    names = list("abcdefghij")
    report = im.sample_report(fake, digits[:100], Oracle(), names)
    assert report["classes_covered"] == 3
    assert "mode collapse: samples cover 3/10 classes (missing d, e, f, g, h, i, j)" in report["warnings"]
    fake[:, 0, 0, 0] = (torch.arange(100) % 10) / 9
    assert im.class_coverage(Oracle(), fake, 10)[0] == 10
    assert im.diversity(torch.ones(5, 1, 4, 4)) == 0.0


def test_metric_names_are_checked():
    assert im.parse_metrics("fid, kid,pr") == ["fid", "kid", "pr"]
    with pytest.raises(ConfigError, match="unknown metric 'is'"):
        im.parse_metrics("fid,is")

"""Tests of the image preprocessing ops registry, its ops, RandAugment and mixup/cutmix."""

from __future__ import annotations

import io
import math
import pickle

import numpy as np
import pytest
from PIL import Image

from framework.data.pp import batch_ops, geometry, randaug
from framework.data.pp import registry as pp
from framework.errors import ConfigError, DataError

RNG = np.random.default_rng


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def random_image(height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    return RNG(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def run(spec: str, example: dict, seed: int = 0) -> dict:
    return pp.parse(spec, key="test.pp")(example, RNG(seed))


# --- parsing -------------------------------------------------------------------------


def test_unknown_op_is_one_line_naming_key_and_op():
    with pytest.raises(ConfigError) as e:
        pp.parse("decode|flipp", key="dataset.pp_train")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("dataset.pp_train: unknown op 'flipp'; known: ")
    assert "central_crop, decode, flip_lr" in message


def test_bad_argument_value_names_key_op_and_problem():
    with pytest.raises(ConfigError) as e:
        pp.parse("decode|inception_crop(224, area_min=2.0)", key="dataset.pp_train")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("dataset.pp_train: inception_crop(224, area_min=2.0): ")
    assert "area_min must lie in (0, 1]" in message


def test_wrong_argument_name_lists_the_signature():
    with pytest.raises(ConfigError) as e:
        pp.parse("inception_crop(224, areamin=0.1)", key="dataset.pp_eval")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("dataset.pp_eval: inception_crop(224, areamin=0.1): ")
    assert "'areamin'" in message
    assert "takes arguments (size, area_min=0.05, area_max=1.0," in message


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("", "empty preprocessing spec"),
        ([], "empty preprocessing spec"),
        ("decode||flip_lr", "empty op"),
        ("resize(__import__('os'))", "not a Python literal"),
        ("resize(1 + 2)", "not a Python literal"),
        ("decode(", "unbalanced"),
        ("os.system", "an op is `name` or `name(args)`"),
        ("randaug(2, 31)", "magnitude must lie in [0, 30]"),
        ("label_smoothing(1.0)", "amount must lie in [0, 1)"),
        ("resize(0)", "size must be a positive int"),
        (42, "string or a list of strings"),
    ],
)
def test_bad_specs_raise_config_error(spec, problem):
    with pytest.raises(ConfigError, match="^k: ") as e:
        pp.parse(spec, key="k")
    assert problem in str(e.value)


def test_list_and_pipe_string_give_the_same_ops():
    piped = pp.parse("decode|inception_crop(224, area_min=0.08)|flip_lr|onehot(10)")
    listed = pp.parse(["decode", "inception_crop(224, area_min=0.08)|flip_lr", " onehot(10) "])
    assert piped.ops == listed.ops
    assert [op.name for op in piped.ops] == ["decode", "inception_crop", "flip_lr", "onehot"]
    assert piped.ops[1].args == (224,) and piped.ops[1].kwargs == {"area_min": 0.08}
    assert piped.spec == listed.spec


def test_pipe_inside_string_argument_does_not_split():
    parsed = pp.parse("keep('a|b', 'c')")
    assert [op.name for op in parsed.ops] == ["keep"]
    assert parsed({"a|b": 1, "c": 2, "d": 3}, RNG(0)) == {"a|b": 1, "c": 2}


def test_known_ops_sorted_and_complete():
    names = pp.known_ops()
    assert names == sorted(names)
    assert set(names) >= {
        "decode",
        "inception_crop",
        "resize",
        "resize_small",
        "central_crop",
        "random_crop",
        "flip_lr",
        "randaug",
        "value_range",
        "onehot",
        "label_smoothing",
        "keep",
    }


def test_ops_return_new_dicts():
    image = random_image()
    example = {"image": image, "label": 3}
    out = run("flip_lr(1.0)|onehot(5)", example)
    assert set(example) == {"image", "label"} and example["image"] is image
    assert set(out) == {"image", "label", "labels"}


# --- decode ------------------------------------------------------------------------------


def test_decode_png_equals_original_array():
    image = random_image(17, 23)
    encoded = png_bytes(image)
    for data in (encoded, np.bytes_(encoded), np.array(encoded, dtype=object)):
        out = run("decode", {"image": data, "label": 0})["image"]
        assert out.dtype == np.uint8 and out.shape == (17, 23, 3)
        np.testing.assert_array_equal(out, image)


def test_decode_grey_png_to_one_and_three_channels():
    grey = RNG(1).integers(0, 256, size=(9, 11), dtype=np.uint8)
    out1 = run("decode(1)", {"image": png_bytes(grey)})["image"]
    np.testing.assert_array_equal(out1, grey[..., None])
    out3 = run("decode", {"image": png_bytes(grey)})["image"]
    np.testing.assert_array_equal(out3, np.repeat(grey[..., None], 3, axis=2))
    # An already decoded grey array is expanded the same way.
    np.testing.assert_array_equal(run("decode", {"image": grey})["image"], out3)


def test_decode_junk_raises_data_error_naming_the_record():
    with pytest.raises(DataError, match="cannot decode image train/00042.jpg"):
        run("decode", {"image": b"not an image at all", "id": "train/00042.jpg"})
    truncated = png_bytes(random_image(64, 64))[:200]
    with pytest.raises(DataError, match="cannot decode image rec7"):
        run("decode", {"image": truncated, "id": "rec7"})
    with pytest.raises(DataError, match="<unknown record>"):
        run("decode", {"image": b"\x89PNG junk"})


# --- crops and resizes ---------------------------------------------------------------


def test_inception_crop_box_within_bounds_area_and_ratio():
    height, width = 300, 400
    area_min, area_max, ratio_min, ratio_max = 0.2, 0.9, 3 / 4, 4 / 3
    fallbacks = 0
    for seed in range(500):
        top, left, h, w = geometry.inception_crop_box(
            height, width, RNG(seed), area_min, area_max, ratio_min, ratio_max
        )
        assert 0 <= top and 0 <= left and 0 < h and 0 < w
        assert top + h <= height and left + w <= width
        if (top, left, h, w) == (0, 0, height, width):  # the fallback: the whole image
            fallbacks += 1
            continue
        # h and w are rounded, so allow half a pixel on each side.
        tol = 0.5 / h + 0.5 / w + 1e-9
        assert area_min * (1 - 2 * tol) <= h * w / (height * width) <= area_max * (1 + 2 * tol)
        assert ratio_min * (1 - 2 * tol) <= w / h <= ratio_max * (1 + 2 * tol)
    assert fallbacks == 0  # every box of these ranges fits this image


def test_inception_crop_box_fallback_is_the_centred_largest_box_in_ratio():
    # A very wide image: no sampled box of ratio <= 4/3 and area >= 0.5 fits in 10 tries.
    top, left, h, w = geometry.inception_crop_box(10, 1000, RNG(0), 0.5, 1.0, 3 / 4, 4 / 3)
    assert (h, w) == (10, 13)
    assert (top, left) == (0, (1000 - 13) // 2)
    # A very tall one: full width, height width / ratio_min.
    assert geometry.inception_crop_box(1000, 10, RNG(0), 0.5, 1.0, 3 / 4, 4 / 3) == (493, 0, 13, 10)


def test_inception_crop_output_shape_and_determinism():
    example = {"image": random_image(60, 90)}
    out = run("inception_crop(24)", example, seed=3)["image"]
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, run("inception_crop(24)", example, seed=3)["image"])
    assert run("inception_crop((20, 30))", example)["image"].shape == (20, 30, 3)


def test_resize_small_shorter_side_and_rounding():
    out = run("resize_small(16)", {"image": random_image(30, 45)})["image"]
    assert out.shape == (16, 24, 3)
    out = run("resize_small(8)", {"image": random_image(19, 12)})["image"]
    assert out.shape == (int(round(19 * 8 / 12)), 8, 3) == (13, 8, 3)  # 12.67 rounds up


def test_resize_to_size_and_float_images():
    assert run("resize((7, 9))", {"image": random_image()})["image"].shape == (7, 9, 3)
    floats = run("value_range|resize(8)", {"image": random_image()})["image"]
    assert floats.shape == (8, 8, 3) and floats.dtype == np.float32


def test_central_crop_picks_the_exact_centre():
    image = np.arange(7 * 8 * 2, dtype=np.uint8).reshape(7, 8, 2)
    out = run("central_crop((2, 3))", {"image": image})["image"]
    # top = (7 - 2) // 2 = 2, left = (8 - 3) // 2 = 2 (odd margins: the extra row/column
    # goes to the bottom/right)
    np.testing.assert_array_equal(out, image[2:4, 2:5])
    np.testing.assert_array_equal(
        run("central_crop(1)", {"image": image})["image"], image[3:4, 3:4]
    )


def test_random_crop_is_a_window_of_the_image():
    image = np.arange(10 * 12, dtype=np.uint8).reshape(10, 12, 1)
    for seed in range(5):
        out = run("random_crop(4)", {"image": image}, seed=seed)["image"]
        top, left = divmod(int(out[0, 0, 0]), 12)
        np.testing.assert_array_equal(out, image[top : top + 4, left : left + 4])


def test_crop_larger_than_image_names_the_record():
    with pytest.raises(ValueError, match="img9"):
        run("central_crop(64)", {"image": random_image(), "id": "img9"})


def test_flip_lr():
    image = random_image()
    np.testing.assert_array_equal(run("flip_lr(1)", {"image": image})["image"], image[:, ::-1])
    np.testing.assert_array_equal(run("flip_lr(0)", {"image": image})["image"], image)
    flips = [
        np.array_equal(run("flip_lr", {"image": image}, seed=s)["image"], image[:, ::-1])
        for s in range(40)
    ]
    assert 5 < sum(flips) < 35


# --- values and labels --------------------------------------------------------------------


def test_value_range_endpoints_exact():
    image = np.array([[[0, 255, 51]]], np.uint8)
    out = run("value_range(-1, 1)", {"image": image})["image"]
    assert out.dtype == np.float32
    assert out[0, 0, 0] == -1.0 and out[0, 0, 1] == 1.0
    np.testing.assert_allclose(out[0, 0, 2], -0.6, rtol=1e-6)
    out = run("value_range(0, 1)", {"image": image})["image"]
    assert out[0, 0, 0] == 0.0 and out[0, 0, 1] == 1.0


def test_onehot_and_label_smoothing_values():
    out = run("onehot(4)|label_smoothing(0.1)", {"label": 2})
    assert out["labels"].dtype == np.float32
    np.testing.assert_allclose(out["labels"], [0.025, 0.025, 0.925, 0.025], rtol=1e-6)
    assert out["label"] == 2
    out = run("onehot(3, key='y', key_result='t', on=2.0, off=-1.0)", {"y": np.int64(0)})
    np.testing.assert_array_equal(out["t"], [2.0, -1.0, -1.0])


def test_onehot_label_out_of_range_names_the_record():
    with pytest.raises(ValueError, match="rec3"):
        run("onehot(4)", {"label": 4, "id": "rec3"})
    with pytest.raises(ValueError, match="rec3"):
        run("onehot(4)", {"label": -1, "id": "rec3"})


def test_keep():
    out = run("keep('image', 'labels')", {"image": 1, "labels": 2, "label": 3, "id": "x"})
    assert out == {"image": 1, "labels": 2}


# --- RandAugment -------------------------------------------------------------------


def test_randaug_deterministic_per_seed_and_shape_preserving():
    image = random_image(40, 40, seed=5)
    spec = pp.parse("randaug(2, 15)")
    outs = [spec({"image": image}, RNG(seed))["image"] for seed in range(6)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == image.shape
    again = [spec({"image": image}, RNG(seed))["image"] for seed in range(6)]
    for out, out_again in zip(outs, again):
        np.testing.assert_array_equal(out, out_again)
    distinct = {out.tobytes() for out in outs}
    assert len(distinct) >= 4


def test_randaug_every_transform_at_full_magnitude():
    image = random_image(24, 20, seed=2)
    transforms = randaug.TRANSFORMS
    assert len(transforms) == 14
    for name, transform in transforms.items():
        for sign in (1, -1):
            out = np.asarray(transform(Image.fromarray(image), 1.0, sign))
            assert out.shape == image.shape and out.dtype == np.uint8, name

    def apply(name: str, f: float, sign: int = 1) -> np.ndarray:
        return np.asarray(transforms[name](Image.fromarray(image), f, sign))

    np.testing.assert_array_equal(apply("Solarize", 1.0), 255 - image)  # all inverted
    np.testing.assert_array_equal(apply("Posterize", 1.0), image & 0xF0)  # 4 bits kept
    # Brightness factor 1 - 0.9 = 0.1 (PIL rounds its blend its own way: within 1).
    np.testing.assert_allclose(apply("Brightness", 1.0, -1), image * 0.1, atol=1)
    # At magnitude 0 the geometric and enhance transforms are identities.
    for name in ("Rotate", "ShearX", "TranslateY", "Solarize", "Posterize", "Contrast"):
        np.testing.assert_array_equal(apply(name, 0.0), image, err_msg=name)
    # A full-magnitude translation shifts by 150/331 of the width and fills with grey.
    wide = random_image(4, 331, seed=3)
    shifted = np.asarray(transforms["TranslateX"](Image.fromarray(wide), 1.0, 1))
    np.testing.assert_array_equal(shifted[:, :181], wide[:, 150:])
    assert np.all(shifted[:, 182:] == 128)
    out = randaug.randaugment(image, RNG(0), num_layers=0, magnitude=30)
    np.testing.assert_array_equal(out, image)


def test_randaug_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        run("value_range|randaug", {"image": random_image(), "id": "r"})


# --- mixup and cutmix -------------------------------------------------------------------


def _batch(b: int = 4, k: int = 5, seed: int = 0) -> dict:
    rng = RNG(seed)
    labels = np.eye(k, dtype=np.float32)[np.arange(b) % k]
    images = rng.normal(size=(b, 6, 8, 3)).astype(np.float32)
    return {"image": images, "labels": labels, "other": np.arange(b)}


def test_mixup_matches_hand_computation():
    batch = _batch()
    out = batch_ops.mixup(batch, RNG(7), mixup_alpha=0.4)
    lam = RNG(7).beta(0.4, 0.4)  # the documented draw order: lam first for mixup only
    x = batch["image"]
    np.testing.assert_array_equal(out["image"], lam * x + (1 - lam) * x[::-1])
    # Row 0 is class 0, paired with row 3 (class 3): the label weights are lam and 1 - lam.
    np.testing.assert_allclose(out["labels"][0, [0, 3]], [lam, 1 - lam], rtol=1e-6)
    np.testing.assert_allclose(out["labels"].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out["other"], batch["other"])
    np.testing.assert_array_equal(batch["image"], x)  # input untouched


def test_cutmix_label_weight_is_the_exact_kept_fraction():
    b, k = 6, 6
    images = np.broadcast_to(np.arange(b, dtype=np.float32)[:, None, None, None], (b, 20, 24, 3))
    batch = {"image": np.array(images), "labels": np.eye(k, dtype=np.float32)}
    seen_partial = False
    for seed in range(10):
        out = batch_ops.mixup(batch, RNG(seed), cutmix_alpha=1.0)
        np.testing.assert_allclose(out["labels"].sum(axis=1), 1.0, rtol=1e-6)
        for row in range(b):
            kept = float(np.mean(out["image"][row] == row))
            partner = b - 1 - row
            assert set(np.unique(out["image"][row])) <= {row, partner}
            np.testing.assert_allclose(out["labels"][row, row], kept, atol=1e-6)
            np.testing.assert_allclose(out["labels"][row, partner], 1 - kept, atol=1e-6)
            seen_partial |= 0 < kept < 1
    assert seen_partial


def test_mixup_switch_and_disabled():
    batch = _batch()
    assert batch_ops.mixup(batch, RNG(0)) == batch
    # switch_prob=1 with both alphas: always cutmix, so pixels are copied, not blended.
    out = batch_ops.mixup(batch, RNG(3), mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0)
    x = batch["image"]
    assert np.all((out["image"] == x) | (out["image"] == x[::-1]))


def test_mixup_settings_validation():
    settings = batch_ops.MixupSettings(mixup_alpha=0.2)
    assert settings.enabled and not batch_ops.MixupSettings().enabled
    with pytest.raises(ConfigError, match=r"^dataset\.mixup\.cutmix_alpha: "):
        batch_ops.MixupSettings(cutmix_alpha=-1.0)
    with pytest.raises(ConfigError, match=r"^dataset\.mixup\.switch_prob: "):
        batch_ops.MixupSettings(switch_prob=1.5)
    with pytest.raises(ConfigError, match=r"^dataset\.mixup\.mixup_alpha: "):
        batch_ops.MixupSettings(mixup_alpha=math.nan)
    out = settings.apply(_batch(), RNG(1))
    np.testing.assert_allclose(out["labels"].sum(axis=1), 1.0, rtol=1e-6)


# --- the whole pipeline -------------------------------------------------------------------

TRAIN_SPEC = (
    "decode|inception_crop(24)|flip_lr|randaug(2, 15)|value_range(-1, 1)|onehot(10)"
    "|label_smoothing(0.1)|keep('image', 'labels')"
)


def test_full_pipeline_and_pickle_round_trip():
    example = {"image": png_bytes(random_image(50, 70)), "label": 7, "id": "a.png"}
    preprocess = pp.parse(TRAIN_SPEC, key="dataset.pp_train")
    out = preprocess(example, RNG(11))
    assert set(out) == {"image", "labels"}
    assert out["image"].shape == (24, 24, 3) and out["image"].dtype == np.float32
    assert -1.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert out["labels"].argmax() == 7

    restored = pickle.loads(pickle.dumps(preprocess))
    assert restored.spec == preprocess.spec and restored.ops == preprocess.ops
    again = restored(example, RNG(11))
    np.testing.assert_array_equal(again["image"], out["image"])
    np.testing.assert_array_equal(again["labels"], out["labels"])
    # A different seed gives a different augmentation.
    assert not np.array_equal(preprocess(example, RNG(12))["image"], out["image"])

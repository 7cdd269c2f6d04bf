"""Hugging Face T5.1.1 checkpoints: converted, loaded as `config.init_from` loads them, the
project's T5 gives transformers' logits; what cannot be mapped is one line.

The fixture (`tests/fixtures/hf_t5/`, made once by its `make_fixture.py` with torch and
transformers) is a tiny random-weight `T5ForConditionalGeneration` and its logits.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from framework.config import loader, schema
from framework.errors import ConfigError
from framework.models.t5 import hf_import
from framework.models.t5 import model as t5_model
from framework.train import checkpoints
from launch import convert

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "hf_t5")
TINY = os.path.join(FIXTURE, "tiny")
TOKENS = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")


def test_converted_checkpoint_gives_transformers_logits(tmp_path):
    out = str(tmp_path / "t5")
    result = convert.convert_hf_t5(TINY, out, task="polarity")
    assert result.size == "tiny" and result.num_params == 40192
    assert result.overrides["model.num_decoder_layers"] == 3
    assert result.overrides["model.relative_attention_max_distance"] == 20
    assert "--config.model.vocab_size=64" in result.command()

    # The written preset's model (the fine-tuning config's dense T5), its parameters
    # read by the function `config.init_from` uses.
    config = loader.load_config(os.path.join(out, "config.json"))
    assert config.init_from == os.path.abspath(out) and config.model.altup.variant == "none"
    model = schema.model_class(config.model_name)(config.model, {})
    fixture = np.load(os.path.join(FIXTURE, "tiny_logits.npz"))
    batch = {name: fixture[name] for name in TOKENS}
    replicated = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("data",)), PartitionSpec())
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
        jax.eval_shape(model.init, jax.random.key(0), batch),
    )
    params, step = checkpoints.load_params(out, abstract)
    assert step == 0
    logits, _ = jax.jit(lambda p, b: model.apply(p, b, train=False))(params, batch)
    difference = np.abs(np.asarray(logits) - fixture["logits"])
    assert difference.max() < 1e-5, difference.max()  # about 2e-6; logits up to 3.3
    assert np.abs(fixture["logits"]).max() > 1.0  # the fixture's logits are not trivial


def _edited_copy(tmp_path, config_changes=None, drop_tensor=None) -> str:
    """A copy of the fixture with config.json fields changed or one tensor removed."""
    directory = str(tmp_path / "edited")
    shutil.copytree(TINY, directory)
    if config_changes:
        path = os.path.join(directory, "config.json")
        with open(path) as f:
            config = json.load(f)
        config.update(config_changes)
        with open(path, "w") as f:
            json.dump(config, f)
    if drop_tensor:
        from safetensors.numpy import load_file, save_file

        path = os.path.join(directory, "model.safetensors")
        tensors = load_file(path)
        del tensors[drop_tensor]
        save_file(tensors, path)
    return directory


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            {"config_changes": {"tie_word_embeddings": True}},
            r"config.json: tie_word_embeddings is true \(the original T5",
        ),
        ({"config_changes": {"feed_forward_proj": "relu"}}, r"json: feed_forward_proj 'relu'"),
        ({"config_changes": {"layer_norm_epsilon": 1e-5}}, r"config.json: layer_norm_epsilon"),
        ({"config_changes": {"num_decoder_layers": 2}}, r"tensor decoder.block.2.\S+ has no place"),
        (
            {"drop_tensor": "decoder.block.1.layer.1.EncDecAttention.v.weight"},
            r"model.safetensors: no tensor decoder.block.1.layer.1.EncDecAttention.v.weight",
        ),
    ],
)
def test_what_does_not_map_is_one_line(tmp_path, edit, message):
    directory = _edited_copy(tmp_path, **edit)
    with pytest.raises(ConfigError, match=message) as error:
        hf_import.load(directory)
    assert "\n" not in str(error.value)


def test_torch_only_checkpoint_and_nothing_written(tmp_path):
    directory = _edited_copy(tmp_path)
    os.rename(
        os.path.join(directory, "model.safetensors"), os.path.join(directory, "pytorch_model.bin")
    )
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="has pytorch_model.bin but no model.safetensors"):
        convert.convert_hf_t5(directory, str(out))
    assert not out.exists()
    # A T5 whose vocabulary is set below the dataset's would read NaN embeddings.
    config = t5_model.T5Model.default_config()
    config.vocab_size = 64
    with pytest.raises(ConfigError, match="model.vocab_size=64 is smaller than the dataset's"):
        t5_model.T5Model(config, {"vocab_size": 4100})

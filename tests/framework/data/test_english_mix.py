"""The English mix: the Brown tag stripper, the rst cleaner, the document split, the
interleaving of parts and the `data=english_mix` config token (no network)."""

from __future__ import annotations

import os

import pytest

from configs.altup import t5 as altup_config
from framework.data.text import brown, english_mix, rst_text
from framework.errors import ConfigError, DataError


def test_brown_strip_tags():
    cases = {
        "\t``/`` Only/rb a/at handful/nn ''/'' ,/, the/at jury/nn said/vbd ./.": (
            '"Only a handful", the jury said.'
        ),
        "Must/md-hl Berlin/np-hl remain/vb-hl divided/vbn-hl ?/.-hl ?/.-hl": (
            "Must Berlin remain divided?"
        ),
        "He/pps met/vbd Ivan/np Allen/np Jr./np ./.": "He met Ivan Allen Jr.",
        "It/pps was/bedz 1-1/2/cd inches/nns (/( see/vb p./nn 3/cd )/) ;/. ;/.": (
            "It was 1-1/2 inches (see p. 3);"
        ),
        "Atlanta's/np$ '/' best/jjt '/' **zg/nn plan/nn costs/vbz $/nns 5/cd !/. !/.": (
            "Atlanta's 'best' plan costs $5!"
        ),
    }
    for line, expected in cases.items():
        assert brown.strip_tags(line) == expected


def test_brown_paragraphs_keep_sentence_and_paragraph_breaks():
    text = (
        "\n\nPrices/nns-hl up/rp-hl \n"  # a heading, no blank line after it
        "The/at cost/nn rose/vbd ./.\n"
        "It/pps fell/vbd later/rbr ./.\n\n\n"
        "\tNobody/pn cared/vbd ./.\n"
        "\tA/at new/jj paragraph/nn ./.\n"
    )
    assert brown.paragraphs(text) == [
        ["Prices up"],
        ["The cost rose.", "It fell later."],
        ["Nobody cared."],
        ["A new paragraph."],
    ]


RST = """\
.. SPDX-License-Identifier: GPL-2.0

=============
Kernel things
=============

:Author: Somebody

The **first** paragraph, with ``code`` and
:ref:`a reference <some-label>`, see :ref:`other_section`.

.. toctree::
   :maxdepth: 2

   intro

Build it like this::

    make -j8 ARCH=arm64

.. note::
   A note is prose.

+-----+-----+
| a   | b   |
+-----+-----+

- first item,
  wrapped
- second item with `a link <https://example.org>`_

term
    Its definition.

{ x = y; } /* 1 + 2 */ 0x10 == 16;
"""


def test_rst_to_paragraphs():
    assert rst_text.to_paragraphs(RST) == [
        "Kernel things",
        "The first paragraph, with code and a reference, see other section.",
        "Build it like this:",
        "A note is prose.",
        "first item, wrapped",
        "second item with a link",
        "term",
        "Its definition.",
    ]


def test_held_out_documents_are_seeded_and_order_free():
    ids = [f"doc{i:03d}" for i in range(300)]
    held = english_mix.held_out_ids(ids, "part")
    assert held == english_mix.held_out_ids(list(reversed(ids)), "part")  # deterministic
    assert len(held) == 6 and set(held) < set(ids)  # 2% of 300
    assert held != english_mix.held_out_ids(ids, "part", seed=1)
    assert held != english_mix.held_out_ids(ids, "other")
    assert len(english_mix.held_out_ids(ids[:3], "part")) == 1  # at least one
    with pytest.raises(DataError, match="a split needs 2"):
        english_mix.held_out_ids(ids[:1], "part")


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_no_document_on_both_sides(tmp_path):
    parts = {"alpha": 120, "beta": 7}
    for part, n in parts.items():
        documents = [
            english_mix.Document(f"{part}{d}", [f"{part}{d} line {i}  of  it" for i in range(3)])
            for d in range(n)
        ]
        info = english_mix.write_documents(str(tmp_path), part, documents, {"licence": "x"})
        paths = english_mix.part_paths(str(tmp_path), part)
        sides = {s: {line.split()[0] for line in read_lines(paths[s])} for s in ("train", "eval")}
        assert not sides["train"] & sides["eval"]
        assert sides["train"] | sides["eval"] == {d.id for d in documents}
        assert sides["eval"] == set(info["eval_documents"]) and len(sides["eval"]) >= 1
        assert info["documents"] == {"train": n - len(sides["eval"]), "eval": len(sides["eval"])}
        assert info["lines"]["eval"] == 3 * len(sides["eval"])
        assert read_lines(paths["eval"])[0].endswith("line 0 of it")  # single-spaced
        assert english_mix.prepare_part(str(tmp_path), part) == info  # reused, not refetched


def test_interleave_mixes_parts_in_proportion(tmp_path):
    inputs = []
    for name, n in (("a", 300), ("b", 100)):
        inputs.append(str(tmp_path / f"{name}.txt"))
        with open(inputs[-1], "w") as f:
            f.writelines(f"{name}{i:03d}\n" for i in range(n))
    output = str(tmp_path / "mix.txt")
    assert english_mix.interleave(inputs, output, block_bytes=40) == 400  # 8 lines a block
    lines = read_lines(output)
    assert sorted(lines) == sorted(read_lines(inputs[0]) + read_lines(inputs[1]))
    assert [x for x in lines if x[0] == "b"] == read_lines(inputs[1])  # each part in order
    assert lines[:32].count("a000") == 1 and 16 <= sum(x[0] == "a" for x in lines[:32]) <= 24
    assert lines[:8] == [f"a{i:03d}" for i in range(8)]  # whole blocks


def test_config_token_english_mix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="python -m launch.prepare_data english_mix") as error:
        altup_config.get_config("tiny,dense,data=english_mix")
    assert "\n" not in str(error.value)
    os.makedirs("data/english_mix")
    for name in english_mix.FILES:
        open(os.path.join("data/english_mix", name), "w").close()
    c = altup_config.get_config("tiny,dense,data=english_mix")
    assert (c.dataset.train_files, c.dataset.eval_files, c.dataset.vocab_path) == (
        "data/english_mix/train.txt", "data/english_mix/eval.txt", "data/english_mix/spm.model",
    )  # fmt: skip
    c = altup_config.get_config("tiny,dense,data=some/dir")  # a directory, unchecked
    assert c.dataset.train_files == "some/dir/train.txt"

"""Corrupted (inputs, targets) examples -> padded model batches, optionally packed.

Batch fields (0 is padding everywhere):
- `encoder_input_tokens` [B, inputs_length] int32,
- `decoder_target_tokens` [B, targets_length] int32,
- `decoder_input_tokens` [B, targets_length] int32: the targets shifted right by one
  with 0 first (0 at the start of every packed segment too),
- `mask` [B] float32, 1 for a real row.

Packing (our simple choice): a row holds a fixed group of whole examples, placed one
after another, and the packed batch adds `encoder_segment_ids`, `decoder_segment_ids`
(1, 2, ... per example, 0 on padding) and `encoder_positions`, `decoder_positions`
(0, 1, ... restarting at each example), T5X's names. The span-corruption dataset
groups a fixed number of examples per row, which is what greedy packing gives when
every example has the same length, as corrupted chunks of one raw length do.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Example = tuple[np.ndarray, np.ndarray]


def _pack_row(parts: Sequence[np.ndarray], out: np.ndarray, what: str) -> None:
    """Writes examples back to back into out[0] (tokens), out[1] (segments), out[2] (positions)."""
    total = sum(len(p) for p in parts)
    if total > out.shape[-1]:
        raise ValueError(f"{what} of {total} tokens do not fit length {out.shape[-1]}")
    start = 0
    for segment, part in enumerate(parts, start=1):
        end = start + len(part)
        out[0, start:end] = part
        out[1, start:end] = segment
        out[2, start:end] = np.arange(len(part))
        start = end


def shift_right(targets: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """Decoder inputs: targets moved one step right, 0 first (and at each segment start)."""
    shifted = np.zeros_like(targets)
    shifted[..., 1:] = targets[..., :-1]
    if positions is not None:
        shifted = np.where(positions == 0, 0, shifted)
    return shifted


def make_batch(
    rows: Sequence[Sequence[Example]],
    inputs_length: int,
    targets_length: int,
    packed: bool = False,
) -> dict[str, np.ndarray]:
    """One batch row per group of examples; unpacked batches take one example per row."""
    enc = np.zeros((len(rows), 3, inputs_length), np.int32)  # tokens, segments, positions
    dec = np.zeros((len(rows), 3, targets_length), np.int32)
    for r, row in enumerate(rows):
        if not packed and len(row) != 1:
            raise ValueError(f"an unpacked row holds one example, got {len(row)}")
        _pack_row([inputs for inputs, _ in row], enc[r], "inputs")
        _pack_row([targets for _, targets in row], dec[r], "targets")
    enc_tokens, enc_segments, enc_positions = np.ascontiguousarray(enc.transpose(1, 0, 2))
    dec_tokens, dec_segments, dec_positions = np.ascontiguousarray(dec.transpose(1, 0, 2))
    batch = {
        "encoder_input_tokens": enc_tokens,
        "decoder_target_tokens": dec_tokens,
        "decoder_input_tokens": shift_right(dec_tokens, dec_positions if packed else None),
        "mask": np.ones(len(rows), np.float32),
    }
    if packed:
        batch.update(
            encoder_segment_ids=enc_segments,
            encoder_positions=enc_positions,
            decoder_segment_ids=dec_segments,
            decoder_positions=dec_positions,
        )
    return batch

"""T5.1.1 encoder-decoder with a per-layer hook (`StackAdapter`) for projects.

Modules: `layers` (sizes, norms, attention with the decoding cache, MLP), `stack`
(encoder, decoder, `StackAdapter`, `T5Module`), `model` (the registered `t5` model and
its metrics), `decode_steps` / `decoding` / `beam_search` (inference), `hf_import` (Hugging
Face T5.1.1 checkpoints as parameters of this model).

T5.1.1 as in the 1.1 checkpoints and T5X: pre-norm RMSNorm without bias or mean
subtraction, relative position bias (one table per stack, shared by its layers;
bidirectional buckets in the encoder, causal in the decoder), no 1/sqrt(d_kv) scaling of
attention logits (it is folded into the query initialiser), gated-GELU feed-forward, no
biases anywhere, one input embedding shared by both stacks and an untied output
projection, dropout off by default (pre-training).

Projects change how token states flow through the stacks (e.g. AltUp's K blocks) by
passing a `StackAdapter`; every layer is a module `layer(x, context, train=...) -> x`
on d-wide states, so a wrapper can call it on whatever it chooses.

Batch fields: `encoder_input_tokens` [B, Li], `decoder_input_tokens` [B, Lt] (targets
shifted right, 0 = BOS), `decoder_target_tokens` [B, Lt]; token 0 is padding.
Packed rows add `encoder_segment_ids` / `decoder_segment_ids` (1, 2, ... per example,
0 on padding): attention then stays within an example. Relative positions come from
position differences inside a row, which equal those inside each packed example, so
`*_positions` are not needed (as in T5X).

Decoding (`framework.models.t5.decoding`; its steps in `decode_steps`, beam search in
`beam_search`): `T5Module.decode_step` runs the decoder on one new token per call with a
key/value cache in flax's `cache` collection. Each decoder self-attention keeps
`cached_key` / `cached_value` [B, max_len, H, d_kv] and a `cache_index`; each
cross-attention keeps its projected encoder memory (`memory_key` / `memory_value`
[B, Li, H, d_kv], computed once); the decoder keeps the `position` of the next token,
which picks the causal relative-position bias row. A `decode_step` applied with
`mutable=["cache"]` and no cache creates the cache (zeros of the shapes above, the memory
projected) and writes its token at position 0; `decode_steps.init_cache` uses that call
and resets all but the memory, so that the decode loop starts at position 0. The
train/eval path never touches the cache.
"""

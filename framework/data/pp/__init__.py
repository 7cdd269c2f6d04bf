"""Image preprocessing ops by name, composed from config strings (big_vision style).

A spec is a string of ops joined by `|`, or a list of such strings (joined in order):

    "decode|inception_crop(224)|flip_lr|randaug(2, 15)|value_range(-1, 1)|onehot(1000)"

Each op is `name` or `name(args)`; the arguments are Python literals (numbers, strings,
tuples, lists, True/False/None), positional or by keyword, read with `ast.literal_eval`
and never evaluated as code. `parse(spec, key)` checks every op's name and arguments up
front and raises a one-line `ConfigError` naming `key` on any problem; it returns a
picklable `Preprocess`, called as `preprocess(example, rng) -> example` in data workers.

An example is a dict: `image` (encoded bytes, then uint8 [H, W, C], then float32),
`label` (int) and optionally `id` (the record or file, named in error messages).

Per-example ops (`ops.py`, `geometry.py`, `randaug.py`; their argument checks in
`checks.py`):
- `decode(channels=3)`: bytes -> uint8 [H, W, channels]; bad data raises `DataError`.
- `inception_crop(size, area_min=0.05, area_max=1.0, ratio_min=3/4, ratio_max=4/3)`:
  random-resized crop to `size` (int or (h, w)).
- `resize(size)`, `resize_small(size)` (shorter side to `size`), `central_crop(size)`,
  `random_crop(size)`.
- `flip_lr(p=0.5)`: left-right flip with probability `p`.
- `randaug(num_layers=2, magnitude=10)`: RandAugment on uint8, magnitude in [0, 30].
- `value_range(vmin=-1, vmax=1, in_min=0, in_max=255)`: linear map to float32.
- `onehot(depth, key="label", key_result="labels", on=1.0, off=0.0)`.
- `label_smoothing(amount, key="labels")`: y * (1 - amount) + amount / depth.
- `keep(*keys)`: drops every other key.

Batch ops (`batch_ops.py`): `mixup(batch, rng, mixup_alpha=, cutmix_alpha=, ...)` and
its settings `MixupSettings`.

`registry.parse` / `registry.known_ops` are the entry points (the built-in op modules
load on first use). New ops register with `@registry.register(name)` on a factory
`factory(*args) -> op`, with `op(example, rng) -> new example`; the factory checks its
arguments.
"""

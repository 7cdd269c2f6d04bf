"""Text data: SentencePiece vocabularies, T5 span corruption, text sources, batches.

Modules, one job each:
- `vocabulary`: load any SentencePiece model (T5's own included) and train new ones.
- `span_corruption`: T5's span-corruption objective in numpy, and the raw length
  that fills the model's input and target lengths without truncating.
- `features`: corrupted examples -> padded (optionally packed) model batches.
- `sources`: documents from local text files or tfds (`c4/en`), tokenised,
  concatenated and cut into fixed-length chunks.
  Also a text-to-text task's split as raw examples (tfds or the task's local files).
- `base`: `TextBuilder`, what the two builders share (vocabulary fields and checks,
  `vocab`, the eval-batch loop, `meta`).
- `dataset`: the registered `span_corruption` dataset builder.
- `task_formats`: T5's text formats: preprocessors, post-processors, golds.
- `tasks`: `Task`, `Mixture` and their `TASKS` registry with T5's
  fine-tuning tasks (GLUE, SuperGLUE, SQuAD, TriviaQA, polarity, fine_food) and
  mixtures, and a user's prepared classification task by name.
- `task_dataset`: the registered `text_task` dataset builder over a task or mixture.
- `polarity`: preparing the offline movie-review polarity corpus.
- `classification`: the one folder format of local classification tasks (train.jsonl,
  eval.jsonl, task.json) and their text format; `classification_import`: a user's
  labelled text (class folders of .txt files, TSV / CSV / JSONL) as such a folder;
  `fine_food`: the Amazon fine-food reviews of R's `modeldata` (Debian) as one.
"""

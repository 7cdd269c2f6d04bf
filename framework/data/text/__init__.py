"""Text data: SentencePiece vocabularies, T5 span corruption, text sources, batches.

Modules, one job each:
- `vocabulary`: load any SentencePiece model (T5's own included) and train new ones.
- `span_corruption`: T5's span-corruption objective in numpy, and the raw length
  that fills the model's input and target lengths without truncating.
- `features`: corrupted examples -> padded (optionally packed) model batches.
- `sources`: documents from local text files or tfds (`c4/en`), tokenised,
  concatenated and cut into fixed-length chunks.
- `dataset`: the registered `span_corruption` dataset builder.
- `tasks`: T5's text-to-text fine-tuning tasks (GLUE, SuperGLUE, SQuAD, TriviaQA,
  polarity): formats, post-processing, metrics, mixtures.
- `task_dataset`: the registered `text_task` dataset builder over a task or mixture.
- `polarity`: preparing the offline movie-review polarity corpus.
"""

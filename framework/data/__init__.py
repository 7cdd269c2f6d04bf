"""Input pipeline and the registered datasets.

`REGISTERED` says which module registers each dataset, so that a lookup imports only it
(a parity run does not load tfds and grain; see `framework.config.registry`).
"""

REGISTERED = {
    "dataset": {
        "parity": "framework.data.parity",
        "random_images": "framework.data.random_data",
        "random_seq2seq": "framework.data.random_data",
        "span_corruption": "framework.data.text.dataset",
        "text_task": "framework.data.text.task_dataset",
        "tfds_images": "framework.data.images",
    },
}

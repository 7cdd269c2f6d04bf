"""A tiny sweep for the tests: a learning rate of the parity smoke Transformer that
trains, and one that makes the loss non-finite (a run that fails)."""

from configs.parity import transformer


def get_config(arg=None):
    c = transformer.get_config("smoke")
    c.num_train_steps = 4
    c.lr.warmup_steps = 0
    c.log_every_steps = 2
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 4
    c.dataset.num_eval_examples = 64
    c.compute_flops = False
    return c


def get_hyper(hyper):
    return hyper.chainit(
        [
            hyper.sweep("config.lr.base", [1e-3]),
            hyper.product(
                [
                    hyper.fixed("config.optimizer.grad_clip_norm", 0.0),
                    hyper.sweep("config.lr.base", [1e30]),
                ]
            ),
        ]
    )

"""The glue that runs the pipeline's stages (issue 21's layout): one module per rule file,
each holding its runners and its `uniego` commands (`add_commands`). The library they call
(equations, models, caches) stays in the `uniego` package above."""

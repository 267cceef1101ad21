"""Tests here patch pickle / torch.load to fail. torch imports some of its modules lazily (torch._dynamo on the
first optimizer step or tensorboard import) and those imports use pickle: import them before any patch, or a
later test of the same worker process finds them half-initialised."""

import torch._dynamo  # noqa: F401

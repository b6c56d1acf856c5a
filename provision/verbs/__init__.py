"""One module per CLI verb, plus what several verbs share (``options``, ``aws``, ``roll``). The CLI imports a verb's
module only when that verb runs, so ``--help`` stays fast."""

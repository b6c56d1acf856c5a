"""One module per CLI verb. The CLI imports a verb's module only when that verb runs, so ``--help`` stays fast."""

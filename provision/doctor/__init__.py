"""`cluster doctor`: one gathering pass (`observe`), pure checks over it (`checks`), findings and their report
(`findings`), and how the report is shown (`show`)."""

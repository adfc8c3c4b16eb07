"""What the scripts share, one job per module; dead_letter_tool/ serves dead_letters.py alone
(README.md, "Layout", says what each module holds)."""

"""The trial app (adaptrx-trial): paired virtual trials, their statistics, figures and committed reports."""

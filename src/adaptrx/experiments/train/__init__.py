"""The training app (adaptrx-train): agents, their evaluation during training and their policy cards."""

"""User-encoder models: sequence encoders whose output is a user vector in a text encoder's space
(`user-text`, user_text.py), optionally conditioned on an instruction (instruct.py). Loaded lazily by the registry."""

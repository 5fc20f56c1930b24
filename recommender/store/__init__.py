"""The model folder on disk: its arrays and their schema, written atomically and read back
checked, without pickle."""

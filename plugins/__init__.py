"""Built-in method plugins (installed as `saebench_plugins`). Every module here is a plugin."""

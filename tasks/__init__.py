"""Built-in task plugins (installed as `saebench_tasks`). Every module here is a plugin."""

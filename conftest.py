# The plugin is registered through its pytest11 entry point (pip install -e .);
# pytester runs in tests/plugin need it too.
pytest_plugins = ["pytester"]

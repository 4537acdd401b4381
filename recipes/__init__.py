"""Recipe scripts (runnable: python recipes/NAME.py --config CONFIG.yaml) and their YAML configs; installed as mtnlp.recipes."""

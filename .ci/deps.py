"""Print the dependency spec from pyproject.toml (--requirements) or a short hash of it (--hash)."""
import hashlib
import json
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = project["dependencies"] + project.get("optional-dependencies", {}).get("test", [])
if sys.argv[1:] == ["--hash"]:
    print(hashlib.sha256(json.dumps(deps).encode()).hexdigest()[:12])
else:
    print("\n".join(deps + ["setuptools>=68", "wheel"]))

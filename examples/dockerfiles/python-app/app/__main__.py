"""Entry point: ``python3 -m app [NAME]``."""

import os
import pwd
import sys

from app.greeter import greeting


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("APP_DEFAULT_NAME", "world")
    user = pwd.getpwuid(os.getuid()).pw_name
    compiled = os.path.isdir(os.path.join(os.path.dirname(__file__), "__pycache__"))
    print(greeting(name))
    print(f"user={user} cwd={os.getcwd()} compiled={compiled}")
    print(f"data={os.environ['APP_DATA']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

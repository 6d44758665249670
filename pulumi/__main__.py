"""`pulumi up` entry point: read the typed stack config, build the cluster, export `nodes` and friends.

Thin on purpose; the program lives in baremetal_ai.declare.program so that tests can run it under mocks.
"""

import config  # pulumi/config.py: the package's loader (the language host puts this directory on sys.path)

from baremetal_ai.declare import program

program.run(config.load())

"""builder: the Dockerfile frontend, build graph, solver, executor and the pybuild command."""

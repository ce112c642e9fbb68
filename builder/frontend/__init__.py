"""The Dockerfile frontend: parsing, instructions, word expansion and .dockerignore rules."""

"""pybuild builds every example: the image runs in docker and in podman with the expected
output, and its file tree and config equal BuildKit's build of the same example."""

from __future__ import annotations

import pytest

from tests.builder.conftest import ExampleBuilds
from tests.builder.examples import (
    EXAMPLES_DIR,
    Example,
    Podman,
    all_examples,
    example_names,
    image_differences,
    run_in_docker,
    secrets_found,
)

NAMES = example_names()


def _example(name: str) -> Example:
    return Example.load(EXAMPLES_DIR / name)


@pytest.mark.parametrize("name", NAMES)
def test_pybuild_image_runs_in_docker(name: str, example_builds: ExampleBuilds) -> None:
    example = _example(name)
    image = example_builds.ours_in_docker(example)
    problem = example.output_problem(run_in_docker(image, example.run))
    assert problem is None, f"{name} built by pybuild, run by docker: {problem}"


@pytest.mark.parametrize("name", NAMES)
def test_pybuild_image_runs_in_podman(name: str, example_builds: ExampleBuilds,
                                      podman: Podman) -> None:
    example = _example(name)
    image = podman.load(example_builds.ours_archive(example))
    problem = example.output_problem(podman.run_image(image, example.run))
    assert problem is None, f"{name} built by pybuild, run by podman: {problem}"


@pytest.mark.parametrize("name", NAMES)
def test_pybuild_image_equals_buildkit_image(name: str, example_builds: ExampleBuilds) -> None:
    example = _example(name)
    peer = example_builds.peer(example)
    ours = example_builds.ours_in_docker(example)
    found = image_differences(ours, peer, example.mount_stubs)
    if example.parent is not None:
        parent = example_builds.ours_parent_in_docker(example)
        found += [f"parent {d}" for d in image_differences(parent, example.parent.tag)]
    assert not found, f"{name}: pybuild's image differs from BuildKit's:\n" + "\n".join(found)


@pytest.mark.parametrize("name", [e.name for e in all_examples() if e.secrets])
def test_secrets_stay_out_of_pybuild_image(name: str, example_builds: ExampleBuilds) -> None:
    example = _example(name)
    assert secrets_found(example, example_builds.ours_in_docker(example)) == []

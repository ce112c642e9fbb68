"""The examples are valid: BuildKit (docker 20.10) builds each one, from its
``peer_dockerfile`` where it has one, and the image passes the example's run check."""

from __future__ import annotations

import pytest

from tests.builder.bases import DEBIAN, BaseImages
from tests.builder.conftest import ExampleBuilds
from tests.builder.examples import (
    EXAMPLES_DIR,
    Example,
    all_examples,
    example_names,
    run_in_docker,
    secrets_found,
)


def test_examples_are_well_formed() -> None:
    examples = all_examples()
    assert len(examples) >= 9, f"only {len(examples)} examples in {EXAMPLES_DIR}"
    for example in examples:
        assert example.description, f"{example.name}: expect.json has no description"
        if example.peer_dockerfile is not None:
            assert example.peer_dockerfile != example.dockerfile


def test_debian_base_has_the_tools_the_examples_use(docker_bases: BaseImages) -> None:
    out = run_in_docker(DEBIAN, ["sh", "-c", "gcc --version | head -1; python3 --version; "
                                             "ls /usr/lib/*/libc.a"])
    assert "gcc" in out and "Python 3" in out and "libc.a" in out, out


@pytest.mark.parametrize("name", example_names())
def test_buildkit_builds_example_and_run_check_passes(name: str,
                                                      example_builds: ExampleBuilds) -> None:
    example = Example.load(EXAMPLES_DIR / name)
    image = example_builds.peer(example)
    problem = example.output_problem(run_in_docker(image, example.run))
    assert problem is None, f"{name} built by BuildKit: {problem}"


@pytest.mark.parametrize("name", [e.name for e in all_examples() if e.secrets])
def test_secrets_stay_out_of_buildkit_image(name: str, example_builds: ExampleBuilds) -> None:
    example = Example.load(EXAMPLES_DIR / name)
    assert secrets_found(example, example_builds.peer(example)) == []

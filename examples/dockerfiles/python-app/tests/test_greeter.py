from app.greeter import greeting


def test_greeting() -> None:
    assert greeting("x").endswith("x!")

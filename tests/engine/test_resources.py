from thinktank.engine.resources import Resources


class Counter:
    made = 0

    def __init__(self) -> None:
        Counter.made += 1
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Plain:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_one_instance_per_class_made_on_first_use_and_closed_at_the_end():
    Counter.made = 0
    resources = Resources()
    assert Counter.made == 0  # nothing is made before it is asked for
    first = resources.get(Counter)
    assert resources.get(Counter) is first and Counter.made == 1
    plain = resources.get(Plain)
    await resources.aclose()
    assert first.closed and plain.closed  # async aclose() and sync close() both called
    assert resources.get(Counter) is not first  # a closed holder starts afresh


def test_a_provided_instance_is_the_one_everyone_gets():
    resources = Resources()
    configured = Plain(7)
    resources.provide(configured)
    assert resources.get(Plain) is configured and resources.get(Plain).value == 7
